"""``--from`` values to the contract's location filters."""
import re

import click

KEYS = ("name", "country", "city", "asn", "tag")
HELP = ("Where to run from (repeatable): NAME (an agent's name), CC (a two-letter country code, e.g. DE), "
        "AS1234 (an ASN), or KEY:VALUE with KEY one of name, country, city, asn, tag — e.g. tag:eu, "
        "city:Berlin. Each becomes one filter of the measurement's `locations`.")
_ASN = re.compile(r"^(?:as)?(\d{1,10})$", re.IGNORECASE)


def parse_filter(value):
    """One ``--from`` value as a filter dict, e.g. ``"tag:eu"`` -> ``{"tag": "eu"}``."""
    text = value.strip()
    if not text:
        raise click.BadParameter("empty location")
    key, sep, rest = text.partition(":")
    if sep and key.lower() in KEYS:
        key, wanted = key.lower(), rest.strip()
        if not wanted:
            raise click.BadParameter(f"{value!r}: nothing after {key}:")
        if key == "asn":
            return {"asn": _asn(wanted, value)}
        return {key: wanted.upper() if key == "country" else wanted}
    if sep:
        raise click.BadParameter(f"{value!r}: the part before ':' must be one of {', '.join(KEYS)}")
    if len(text) == 2 and text.isalpha():
        return {"country": text.upper()}
    if text.lower().startswith("as") and _ASN.match(text):
        return {"asn": _asn(text, value)}
    return {"name": text}


def _asn(text, original):
    match = _ASN.match(text)
    if not match:
        raise click.BadParameter(f"{original!r}: an ASN is a number, e.g. 64500 or AS64500")
    return int(match.group(1))


def parse_filters(values):
    return [parse_filter(value) for value in values]
