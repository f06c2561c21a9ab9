"""The probe agent: a Celery worker at one vantage point. Imports nothing from Flask or the database.

`protocol` (queue, task and key names shared with the API and the central worker), `settings`
(from os.environ), `celery_app` (the Celery configuration), `heartbeat` (the LOCATION announce),
`main` (the entry: tasks and `python -m app.agent`). See docs/agents.md.
"""
