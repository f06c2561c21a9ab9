"""The one clock: every timestamp in ProbeOps comes from here (tests patch it)."""
from datetime import UTC, datetime


def utcnow():
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def start_of_day(moment):
    """Midnight UTC of the day ``moment`` falls in."""
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def start_of_month(moment):
    """Midnight UTC of the first day of the month ``moment`` falls in."""
    return start_of_day(moment).replace(day=1)


def start_of_next_month(moment):
    """Midnight UTC of the first day of the month after ``moment``."""
    first = start_of_month(moment)
    return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
