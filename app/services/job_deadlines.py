"""How long a probe job may run: its probe type's bound (from the registry) plus a margin."""
from datetime import timedelta

from app.probes.registry import PROBE_TYPES
from app.probes.spec import bounds_from_config


def probe_bound_seconds(probe_type, parameters, config):
    """The longest the engine can take for this probe with these settings, in seconds."""
    probe = PROBE_TYPES.get(probe_type)
    if probe is None:
        raise ValueError(f"no bound known for probe type {probe_type!r}")
    return probe.bound_seconds(parameters, bounds_from_config(config))


def job_deadline(probe_type, parameters, config, started_at):
    """When a job started at ``started_at`` is overdue."""
    seconds = probe_bound_seconds(probe_type, parameters, config) + config["PROBE_DEADLINE_MARGIN_SECONDS"]
    return started_at + timedelta(seconds=seconds)
