"""Probe engines: plain Python, no Flask.  See docs/probes.md.

``targets`` (the guard), ``ping``, ``traceroute``, ``dns``, ``whois``; every engine takes its
parameters and returns ``results.ProbeResult(success, text, data)``.
"""
