"""The central worker (`./start.sh worker`): a Celery worker on `probeops.central` that stores the
agents' results in the database, tells waiting API processes, and ends overdue jobs."""
