"""probeops: the command-line client of the ProbeOps API (talks HTTP only; no server code)."""

__version__ = "1.0.0"
