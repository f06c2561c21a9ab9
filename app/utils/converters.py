"""URL converters."""
from werkzeug.routing import IntegerConverter


class IdConverter(IntegerConverter):
    """A row id: a positive integer that fits a 64-bit column (larger ids are a 404, not an overflow)."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=2**63 - 1)
