"""The ``probeops`` command: login, run probes as measurements, history, usage, locations."""
import os
import platform
import sys
from datetime import UTC, datetime

import click

from probeops_cli import __version__, config
from probeops_cli.client import ApiFailure, Client
from probeops_cli.locations import HELP as FROM_HELP
from probeops_cli.locations import parse_filters
from probeops_cli.output import print_json, print_result, table
from probeops_cli.watch import follow

EXIT_OK, EXIT_PROBE_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
NOT_RUN_CODES = {"target_refused", "invalid_target"}  # the probe could not run: a request error, not a failure
RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "PTR", "SRV", "CAA")


class ProbeopsGroup(click.Group):
    """Turns every API or config failure into its message and exit status 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ApiFailure as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        except config.ConfigError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("Interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except OSError as exc:  # e.g. the config folder cannot be written
            click.echo(f"Error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            ctx.exit(EXIT_USAGE)


@click.group(cls=ProbeopsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", metavar="URL", help="The API's base URL (default: $PROBEOPS_URL, then the config file).")
@click.version_option(__version__, prog_name="probeops")
@click.pass_context
def cli(ctx, url):
    """Run ProbeOps probes from the command line.

    \b
    Credentials: PROBEOPS_URL and PROBEOPS_API_KEY, else the config file written by
    `probeops login` ($PROBEOPS_CONFIG, default ~/.config/probeops/config.json, mode 0600).
    Exit status: 0 every result succeeded, 1 a probe ran and failed, 2 usage or API error.
    """
    ctx.obj = {"url": url}


def _client(ctx):
    settings = config.resolve(ctx.obj.get("url"))
    client = Client(settings.url, api_key=settings.api_key)
    client.require_credentials()
    return client


# -- login -----------------------------------------------------------------------------------------
@cli.command()
@click.option("--url", "login_url", metavar="URL", help="The API's base URL (asked when not given).")
@click.option("--user", "--email", "--username", "login", metavar="LOGIN", help="Email or username.")
@click.option("--password", metavar="PASSWORD", help="Asked without echo when not given (prefer that).")
@click.option("--key-name", default=None, metavar="NAME", help="Name of the API key created (default: this machine's).")
@click.pass_context
def login(ctx, login_url, login, password, key_name):
    """Log in, create an API key for this machine and store it (only the key) in the config file."""
    stored = config.load_file()
    url = login_url or ctx.obj.get("url")
    if not url:
        url = click.prompt("API URL", default=os.environ.get("PROBEOPS_URL") or stored.get("url") or config.DEFAULT_URL)
    url = url.rstrip("/")
    login = login or click.prompt("Email or username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    field = "email" if "@" in login else "username"
    answer = Client(url).json("POST", "/api/users/login", json={field: login, "password": password})
    session = Client(url, token=answer["token"])
    key_name = key_name or f"probeops-cli@{platform.node() or 'unknown'}"
    created = _create_key(session, key_name)
    if stored.get("url") == url and stored.get("api_key_id") not in (None, created["api_key"].get("id")):
        _delete_key(session, stored["api_key_id"])  # the key this file held before: replaced, not piled up
    _logout(session, answer.get("refresh_token"))
    key = created["api_key"]
    path = config.save_file({**stored, "url": url, "api_key": key["key"], "api_key_id": key.get("id"),
                             "user": (answer.get("user") or {}).get("username")})
    click.echo(f"Logged in to {url} as {(answer.get('user') or {}).get('username', login)}.")
    click.echo(f"API key {key['key'][:14]}... (id {key.get('id')}) stored in {path} (mode 0600).")


def _create_key(session, name):
    body = {"name": name[:100], "description": f"probeops CLI on {platform.node() or 'unknown'}"[:255]}
    try:
        return session.json("POST", "/api/apikeys", json=body)
    except ApiFailure as exc:
        if exc.status != 400 or "name" not in exc.message:
            raise
        return session.json("POST", "/api/apikeys", json={"description": body["description"]})  # older server


def _delete_key(session, key_id):
    """Delete the previous key of this config file (best effort: it may be gone or another user's)."""
    try:
        session.send("DELETE", f"/api/apikeys/{int(key_id)}", ok=(200, 204, 404))
    except (ApiFailure, TypeError, ValueError):
        pass


def _logout(session, refresh_token):
    """End the login session: the CLI keeps the API key, never the token (best effort)."""
    try:
        session.send("POST", "/api/users/logout", json={"refresh_token": refresh_token} if refresh_token else {},
                     ok=(200, 204))
    except ApiFailure:
        pass


# -- probes ----------------------------------------------------------------------------------------
def _measurement_options(function):
    """--from, --limit and --json, shared by the four probe commands."""
    function = click.option("--json", "as_json", is_flag=True,
                            help="Print the finished measurement as the API's JSON.")(function)
    function = click.option("--limit", type=click.IntRange(min=1), default=None,
                            help="How many locations run it in all (default: one per --from, else 1).")(function)
    function = click.option("--from", "from_", multiple=True, metavar="LOCATION", help=FROM_HELP)(function)
    return function


def _run(ctx, probe_type, target, options, from_, limit, as_json):
    client = _client(ctx)
    filters = parse_filters(from_)
    body = {"type": probe_type, "target": target,
            "options": {key: value for key, value in options.items() if value is not None}}
    if filters:
        body["locations"] = filters
    if limit is not None or filters:
        body["limit"] = limit if limit is not None else len(filters)
    created = client.json("POST", "/api/measurements", json=body)
    total = created.get("probes_count") or 0
    progress = _Progress(total, quiet=as_json)
    try:
        progress.started(created.get("id"), target, probe_type)
        final = follow(client, created["id"], progress.result if not as_json else progress.count)
    except KeyboardInterrupt:
        progress.done()
        url = created.get("url") or f"/api/measurements/{created['id']}"
        url = client.base_url + url if url.startswith("/") else url
        click.echo(f"Stopped following; measurement {created['id']} goes on at the server: {url}", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    progress.done()
    if as_json:
        print_json(final)
    ctx.exit(_exit_status(final.get("results") or []))


class _Progress:
    """Live progress on stderr; each result printed on stdout as it ends."""

    def __init__(self, total, quiet):
        self.total, self.ended, self.quiet = total, 0, quiet
        self.live = sys.stderr.isatty()

    def started(self, measurement_id, target, probe_type):
        if not self.quiet or self.live:
            click.echo(f"{probe_type} {target}: measurement {measurement_id}, {self.total} location(s)", err=True)
        self._status()

    def count(self, result):
        self.ended += 1
        self._status()

    def result(self, result):
        self.ended += 1
        self._clear()
        print_result(result)
        self._status()

    def done(self):
        self._clear()

    def _status(self):
        if self.live and self.ended < self.total:
            click.echo(f"\r  waiting for results: {self.ended}/{self.total} ended", nl=False, err=True)

    def _clear(self):
        if self.live:
            click.echo("\r\033[K", nl=False, err=True)


def _exit_status(results):
    if any(result.get("code") in NOT_RUN_CODES for result in results):
        return EXIT_USAGE
    if results and all(result.get("success") for result in results):
        return EXIT_OK
    return EXIT_PROBE_FAILED


@cli.command()
@click.argument("target")
@click.option("--count", "-c", type=int, default=None, help="Echo requests to send (server default 4, bounds 1–10).")
@_measurement_options
@click.pass_context
def ping(ctx, target, count, from_, limit, as_json):
    """Ping TARGET (a host name or IP address)."""
    _run(ctx, "ping", target, {"count": count}, from_, limit, as_json)


@cli.command()
@click.argument("target")
@click.option("--max-hops", "-m", type=int, default=None, help="Last TTL tried (server default 30, bounds 1–64).")
@_measurement_options
@click.pass_context
def traceroute(ctx, target, max_hops, from_, limit, as_json):
    """Trace the route to TARGET (a host name or IP address)."""
    _run(ctx, "traceroute", target, {"max_hops": max_hops}, from_, limit, as_json)


@cli.command()
@click.argument("target")
@click.option("--type", "--record-type", "-t", "record_type", default=None, metavar="TYPE",
              type=click.Choice(RECORD_TYPES, case_sensitive=False),
              help="Record type (default A; an IP address is a PTR lookup).")
@click.option("--nameserver", "-n", default=None, metavar="IP", help="Ask this resolver (an IP address).")
@_measurement_options
@click.pass_context
def dns(ctx, target, record_type, nameserver, from_, limit, as_json):
    """Look up TARGET's DNS records."""
    _run(ctx, "dns", target, {"record_type": record_type.upper() if record_type else None,
                              "nameserver": nameserver}, from_, limit, as_json)


@cli.command()
@click.argument("target")
@_measurement_options
@click.pass_context
def whois(ctx, target, from_, limit, as_json):
    """WHOIS (or RDAP) for the domain or IP address TARGET."""
    _run(ctx, "whois", target, {}, from_, limit, as_json)


# -- reading ---------------------------------------------------------------------------------------
@cli.command()
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True, help="How many jobs.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many of the newest.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def history(ctx, limit, offset, as_json):
    """Your probe jobs, newest first."""
    page = _client(ctx).json("GET", "/api/probes/history", params={"limit": limit, "offset": offset})
    if as_json:
        print_json(page)
        return
    jobs = page.get("jobs") or []
    if not jobs:
        click.echo("No probe jobs yet.")
        return
    table(jobs, [("ID", "id"), ("TYPE", "probe_type"), ("TARGET", "target"), ("STATUS", "status"),
                 ("SUCCESS", "success"), ("LOCATION", "location"), ("MEASUREMENT", "measurement_id"),
                 ("CREATED", lambda job: _when(job.get("created_at")))])
    total = (page.get("pagination") or {}).get("total")
    if total is not None and total > offset + len(jobs):
        click.echo(f"({len(jobs)} of {total}; --offset {offset + len(jobs)} for more)")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def locations(ctx, as_json):
    """The locations (agents) online now."""
    found = _client(ctx).json("GET", "/api/locations")
    if as_json:
        print_json(found)
        return
    table(found.get("locations") or [], [("NAME", "name"), ("COUNTRY", "country"), ("CITY", "city"),
                                         ("ASN", "asn"), ("TAGS", "tags"), ("VERSION", "version"),
                                         ("LAST SEEN", lambda loc: _when(loc.get("last_seen")))])


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON (or the headers' figures).")
@click.pass_context
def usage(ctx, as_json):
    """Probe quota and request rate limit left."""
    client = _client(ctx)
    response = client.send("GET", "/api/users/me/usage", ok=(200, 404, 405))
    if response.status_code == 200:
        figures = response.json()
    else:  # a server without /me/usage: the same figures from the headers of /me
        figures = _usage_from_headers(client.send("GET", "/api/users/me").headers)
    if as_json:
        print_json(figures)
        return
    _print_usage(figures)


def _usage_from_headers(headers):
    def number(name):
        value = headers.get(name)
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    def period(suffix):
        limit, remaining = number(f"X-RateLimit-Limit-{suffix}"), number(f"X-RateLimit-Remaining-{suffix}")
        used = limit - remaining if limit is not None and remaining is not None else None
        return {"limit": limit, "used": used, "remaining": remaining}

    day, month = period("Day"), period("Month")
    day["reset"], month["reset"] = number("X-RateLimit-Reset"), None  # the header is the nearest reset
    return {"quota": {"day": day, "month": month},
            "rate_limit": {"limit": number("RateLimit-Limit"), "remaining": number("RateLimit-Remaining"),
                           "reset": number("RateLimit-Reset")}}


def _print_usage(figures):
    quota = figures.get("quota") or {}
    rows = []
    for name in ("day", "month"):
        period = quota.get(name) or {}
        rows.append({"what": f"probes this {name}", "limit": _unlimited(period.get("limit")),
                     "used": period.get("used"), "remaining": _unlimited(period.get("remaining")),
                     "reset": _reset(period.get("reset"))})
    rate = figures.get("rate_limit") or {}
    rows.append({"what": "requests (rate limit)", "limit": rate.get("limit"), "used": None,
                 "remaining": rate.get("remaining"), "reset": _reset(rate.get("reset"))})
    running = figures.get("running_probes")
    if running:
        rows.append({"what": "probes running now", "limit": _unlimited(running.get("limit")),
                     "used": running.get("running"), "remaining": None, "reset": None})
    table(rows, [("", "what"), ("LIMIT", "limit"), ("USED", "used"), ("LEFT", "remaining"), ("RESET", "reset")])


def _when(iso):
    """``2026-11-26T03:30:07.706+00:00`` -> ``2026-11-26 03:30:07`` (the API's times are UTC)."""
    return iso[:19].replace("T", " ") if isinstance(iso, str) and len(iso) >= 19 else iso


def _reset(value):
    """An epoch time as UTC ISO, a small number as seconds from now."""
    if not isinstance(value, (int, float)):
        return value
    if value > 10**9:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"in {int(value)} s"


def _unlimited(value):
    return "unlimited" if value is None else value

