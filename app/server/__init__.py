"""The HTTP server layer under Gunicorn: a worker that buffers whole requests before a thread sees them.

See docs/server.md for why, what it costs and its limits.
"""
