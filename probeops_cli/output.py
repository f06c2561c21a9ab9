"""Text a person reads: results with their location, and plain tables."""
import json

import click


def print_json(data):
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def location_label(location):
    """``name (city, CC, AS64500)`` from a LOCATION dict (or a bare name)."""
    if not isinstance(location, dict):
        return str(location or "?")
    where = [str(part) for part in (location.get("city"), location.get("country")) if part]
    if location.get("asn"):
        where.append(f"AS{location['asn']}")
    name = location.get("name") or "?"
    return f"{name} ({', '.join(where)})" if where else name


def print_result(result):
    """One result: a header with its location and status, then the probe's own text."""
    status = result.get("status") or "?"
    if status == "finished":
        status = "ok" if result.get("success") else "failed"
    code = f" [{result['code']}]" if result.get("code") else ""
    click.secho(f"=== {location_label(result.get('location'))}: {status}{code}", bold=True)
    text = (result.get("result") or "").rstrip("\n")
    if text:
        click.echo(text)


def table(rows, columns):
    """Left-aligned columns; ``columns`` is ``[(header, key_or_function), …]``."""
    cells = [[header for header, _ in columns]]
    for row in rows:
        cells.append([_cell(getter(row) if callable(getter) else row.get(getter)) for _, getter in columns])
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    for line in cells:
        click.echo("  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip())


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    return str(value)
