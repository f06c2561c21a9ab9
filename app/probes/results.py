"""The one result type every probe engine returns."""
from dataclasses import dataclass, field


@dataclass
class ProbeResult:
    """Outcome of one probe: a human-readable text and the same measurement as data.

    ``success`` is False when the probe ran but failed (unreachable, NXDOMAIN, timeout);
    ``text`` is what a person reads (iputils / dig / whois style); ``data`` is JSON-serialisable.
    """

    success: bool
    text: str
    data: dict = field(default_factory=dict)
