"""Deployment files: Dockerfile, compose files and env templates agree with the code.

No network, no Docker: the compose files are read with a small indentation-aware parser for
the YAML subset they use (cross-checked against PyYAML when it happens to be installed), and
the variable names are checked against what app/ and start.sh actually read, extracted from
the sources each run so that renaming a setting breaks this test, not a deployment.
"""
import importlib.util
import json
import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_app_config():
    """app/config.py itself, loaded by path: it only needs ``os``, and this keeps the test
    independent of the rest of the package (extensions, models) while it is being edited."""
    spec = importlib.util.spec_from_file_location("probeops_app_config", ROOT / "app" / "config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_config = _load_app_config()
ConfigError, check_production = _config.ConfigError, _config.check_production

COMPOSE_DEV = ROOT / "docker-compose.yml"
COMPOSE_BACKEND = ROOT / "docker-compose.backend.yml"
TEMPLATE_DEV = ROOT / ".env.template"
TEMPLATE_BACKEND = ROOT / ".env.backend.template"
DOCKERFILE = ROOT / "Dockerfile"
TEMPLATES = (TEMPLATE_DEV, TEMPLATE_BACKEND)
COMPOSE_FILES = (COMPOSE_DEV, COMPOSE_BACKEND)

# Read by the official postgres image's entrypoint (only for the db service / its env_file).
POSTGRES_IMAGE_NAMES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
# Read by Python, pip and the flask CLI themselves (only in the Dockerfile).
PYTHON_RUNTIME_NAMES = {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_NO_CACHE_DIR",
                        "PIP_DISABLE_PIP_VERSION_CHECK", "FLASK_APP"}
SECRET_NAMES = {"JWT_SECRET_KEY", "ADMIN_PASSWORD", "POSTGRES_PASSWORD"}
PLACEHOLDER_MARKERS = ("CHANGE_ME", "PASTE_", "REPLACE_", "EXAMPLE")


# --- names the code reads ---------------------------------------------------------------------

def app_names():
    """Every environment variable app/ reads (config.py helpers, os.environ.get anywhere)."""
    names = set()
    config = (ROOT / "app" / "config.py").read_text()
    names |= set(re.findall(r'\b_(?:env|int|float|bool|list)\(\s*"([A-Z][A-Z0-9_]*)"', config))
    names |= set(re.findall(r'\bquota\(\s*"([A-Z][A-Z0-9_]*)"', config))
    for path in (ROOT / "app").rglob("*.py"):
        names |= set(re.findall(r'os\.environ(?:\.get\(|\[)\s*"([A-Z][A-Z0-9_]*)"', path.read_text()))
        names |= set(re.findall(r'os\.getenv\(\s*"([A-Z][A-Z0-9_]*)"', path.read_text()))
    # The agent reads its own settings from a mapping (app/agent/settings.py): environ.get("NAME").
    agent = (ROOT / "app" / "agent" / "settings.py").read_text()
    names |= set(re.findall(r'\benviron\.get\(\s*"([A-Z][A-Z0-9_]*)"', agent))
    return names


def start_sh_names():
    """Variables start.sh takes from the environment: every one is read as ${NAME:-default}."""
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-", (ROOT / "start.sh").read_text()))


@pytest.fixture(scope="module")
def known_names():
    names = app_names() | start_sh_names()
    # The extraction itself must work, or every check below would pass vacuously.
    for expected in ("JWT_SECRET_KEY", "DATABASE_URL", "RATELIMIT_STORAGE_URI", "TRUSTED_PROXIES",
                     "APP_ENV", "PROBEOPS_INSTANCE_PATH", "QUOTA_FREE_DAY", "WORKERS", "API_PORT",
                     "FORWARDED_ALLOW_IPS", "DB_WAIT_SECONDS", "PROBEOPS_SKIP_DOTENV"):
        assert expected in names, f"could not find {expected} in app/ or start.sh"
    return names


# --- env templates ----------------------------------------------------------------------------

ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def template_entries(path):
    """``[(name, value, active)]`` for KEY=value lines, commented-out ones included."""
    entries = []
    for line in path.read_text().splitlines():
        match = ASSIGNMENT.match(line.strip())
        if match:
            value = match.group(3).strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            entries.append((match.group(2), value, match.group(1) is None))
    return entries


def active(path):
    return {name: value for name, value, is_active in template_entries(path) if is_active}


def looks_like_real_secret(text):
    """A long random-looking token that is not marked as a placeholder."""
    for token in re.findall(r"[A-Za-z0-9+/=_.\-]{20,}", text):
        if any(marker in token.upper() for marker in PLACEHOLDER_MARKERS):
            continue
        mixed = re.search(r"[a-z]", token) and re.search(r"[A-Z]", token) and re.search(r"[0-9]", token)
        if (mixed and len(token) >= 24) or re.search(r"[0-9a-fA-F]{32,}", token):
            return True
    return False


def test_secret_detector_detects_generated_secrets():
    assert looks_like_real_secret(secrets.token_urlsafe(48))
    assert looks_like_real_secret(secrets.token_hex(24))
    assert looks_like_real_secret("DATABASE_URL=postgresql://probeops:" + secrets.token_hex(24) + "@db/probeops")
    assert not looks_like_real_secret("CHANGE_ME_generate_with__python3_-c_import_secrets_print_secrets")
    assert not looks_like_real_secret("postgresql://probeops:probeops@db:5432/probeops")


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_names_are_read_by_the_code(path, known_names):
    allowed = known_names | (POSTGRES_IMAGE_NAMES if path == TEMPLATE_BACKEND else set())
    names = [name for name, _, _ in template_entries(path)]
    assert len(names) >= 5, "template parsed to (almost) nothing"
    unknown = sorted(set(names) - allowed)
    assert not unknown, f"{path.name} names settings nothing reads: {unknown}"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_templates_hold_no_real_secret(path):
    for name, value, _ in template_entries(path):
        assert not looks_like_real_secret(value), f"{path.name}: {name} looks like a real secret"
        if name in SECRET_NAMES and value:
            assert any(m in value.upper() for m in PLACEHOLDER_MARKERS), \
                f"{path.name}: {name} must be empty or an obvious placeholder, not {value!r}"
        if name == "DATABASE_URL" and path == TEMPLATE_BACKEND:
            password = re.match(r"^[a-z0-9+]+://[^:/@]+:([^@]*)@", value)
            assert password and any(m in password.group(1).upper() for m in PLACEHOLDER_MARKERS), \
                f"{path.name}: the DATABASE_URL password must be a placeholder"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_jwt_placeholders_are_refused_in_production(path):
    values = [value for name, value, _ in template_entries(path) if name == "JWT_SECRET_KEY" and value]
    assert values, f"{path.name} shows no JWT_SECRET_KEY placeholder"
    for value in values:
        with pytest.raises(ConfigError, match="JWT_SECRET_KEY"):
            check_production({"JWT_SECRET_KEY": value, "CORS_ORIGINS": ["https://a.example"],
                              "CORS_ALLOW_CREDENTIALS": False})


def test_backend_template_requires_production_and_passes_once_the_secret_is_real():
    env = active(TEMPLATE_BACKEND)
    assert env.get("APP_ENV") == "production"
    assert "JWT_SECRET_KEY" in env, "the production template must make the secret impossible to forget"
    assert "POSTGRES_PASSWORD" in env and env["POSTGRES_PASSWORD"] == "", \
        "empty: the postgres image then refuses to initialise until the operator sets one"
    assert env.get("RATELIMIT_STORAGE_URI", "").startswith("redis://")
    raw = [line for line in TEMPLATE_BACKEND.read_text().splitlines()
           if ASSIGNMENT.match(line) and not line.startswith("#")]
    assert not [line for line in raw if re.search(r"[\s\"'$`;]", line.split("=", 1)[1])], \
        "active production values must need no quoting: docker run --env-file keeps quotes literally"
    assert env.get("METRICS_TOKEN") == "", "empty: production refuses to start until the operator sets one"
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        check_production({"JWT_SECRET_KEY": secrets.token_urlsafe(48), "METRICS_TOKEN": env["METRICS_TOKEN"]})
    # Everything else in the template is acceptable to production: only the secrets are missing.
    config = {
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "METRICS_TOKEN": secrets.token_urlsafe(32),
        "CORS_ORIGINS": [o.strip() for o in env.get("CORS_ORIGINS", "*").split(",") if o.strip()],
        "CORS_ALLOW_CREDENTIALS": env.get("CORS_ALLOW_CREDENTIALS", "false").lower() in ("1", "true", "yes", "on"),
    }
    check_production(config)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_templates_can_be_sourced_by_start_sh(path):
    """start.sh does ``set -a; . ./.env``: each active line must come out as written."""
    result = subprocess.run(["env", "-i", "bash", "-c", 'set -eu; set -a; . "$1"; set +a; env -0', "_", str(path)],
                            capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr.decode()
    exported = dict(item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    for name, value in active(path).items():
        assert exported.get(name) == value, f"{path.name}: bash reads {name} as {exported.get(name)!r}"


# --- compose files ----------------------------------------------------------------------------

def _scalar(text):
    text = text.strip()
    if not text:
        return None
    if text.startswith("["):
        return json.loads(text)  # flow sequences are written JSON-compatible
    if text.startswith('"'):
        return json.loads(text)
    if text.startswith("'"):
        assert text.endswith("'"), text
        return text[1:-1].replace("''", "'")
    assert not text.startswith(("{", "&", "*", "|", ">", "!")), f"unsupported YAML: {text}"
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)  # as YAML reads an unquoted integer
    return text


def parse_yaml(text):
    """Block mappings, block sequences of scalars, flow sequences: the subset compose files use."""
    lines = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        assert "\t" not in raw[: len(raw) - len(raw.lstrip())], "tab indentation"
        lines.append((len(raw) - len(raw.lstrip(" ")), stripped))

    def block(i, indent):
        if lines[i][1].startswith("- ") or lines[i][1] == "-":
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("-"):
                item = lines[i][1][1:].strip()
                assert not re.match(r"^[\w.-]+:(\s|$)", item), f"unsupported YAML (mapping in list): {item}"
                items.append(_scalar(item))
                i += 1
            return items, i
        mapping = {}
        while i < len(lines) and lines[i][0] == indent:
            content = lines[i][1]
            match = re.match(r'^("[^"]+"|[\w.-]+):(?:\s+(.*))?$', content)
            assert match, f"unsupported YAML line: {content}"
            key = match.group(1).strip('"')
            assert key not in mapping, f"duplicate key {key}"
            i += 1
            if match.group(2) is not None:
                mapping[key] = _scalar(match.group(2))
            elif i < len(lines) and lines[i][0] > indent:
                mapping[key], i = block(i, lines[i][0])
            elif i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("-"):
                mapping[key], i = block(i, indent)  # "key:" followed by a same-indent list
            else:
                mapping[key] = None
        return mapping, i

    node, end = block(0, lines[0][0])
    assert end == len(lines), f"could not parse from line {lines[end][1]!r}"
    return node


def load_compose(path):
    data = parse_yaml(path.read_text())
    try:
        import yaml
    except ImportError:
        pass
    else:
        assert yaml.safe_load(path.read_text()) == data, "the test's parser disagrees with PyYAML"
    return data


@pytest.fixture(scope="module", params=COMPOSE_FILES, ids=lambda p: p.name)
def compose(request):
    return request.param, load_compose(request.param)


def test_parser_reads_nesting_and_rejects_what_it_does_not_know():
    assert parse_yaml("a:\n  b:\n    - x\n    - \"y\"\n  c: [\"1\", \"2\"]\nd: 'e'\n") == \
        {"a": {"b": ["x", "y"], "c": ["1", "2"]}, "d": "e"}
    with pytest.raises(AssertionError):
        parse_yaml("a:\n  - b: c\n")


def test_compose_services_and_healthchecks(compose):
    path, data = compose
    services = data["services"]
    assert set(services) == {"api", "db", "redis", "proxy", "worker", *agent_services(services)}, path.name
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        assert isinstance(check.get("test"), list) and check["test"][0] in ("CMD", "CMD-SHELL"), \
            f"{path.name}: service {name} has no healthcheck"
    assert services["db"]["image"] == "postgres:15-alpine"
    assert services["redis"]["image"] == "redis:7-alpine"
    assert "/health" in " ".join(services["api"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    api = services["api"]
    assert api["depends_on"] == {"db": {"condition": "service_healthy"},
                                 "redis": {"condition": "service_healthy"}}, path.name
    assert "NET_RAW" in api.get("cap_add", []), f"{path.name}: probes need CAP_NET_RAW"
    assert api["environment"]["RATELIMIT_STORAGE_URI"] == "redis://redis:6379/0"
    assert api["environment"]["PROBEOPS_INSTANCE_PATH"] == "/app/instance"
    assert any(v.endswith(":/app/instance") for v in api["volumes"])
    assert all(p.endswith(":5000") for p in api["ports"]), "the container listens on 5000"
    assert api["environment"]["API_PORT"] == "5000"


def test_compose_names_are_read_by_the_code(compose, known_names):
    path, data = compose
    for name, service in data["services"].items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{path.name}: write environment as a mapping"
        allowed = {"db": POSTGRES_IMAGE_NAMES, "redis": set(), "proxy": set()}.get(name, known_names)
        unknown = sorted(set(env) - allowed)
        assert not unknown, f"{path.name}: service {name} sets names nothing reads: {unknown}"
    interpolated = set(re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    assert interpolated <= known_names, f"{path.name} interpolates unknown names {interpolated - known_names}"


def agent_services(services):
    """The services that run ./start.sh agent."""
    return {name for name, service in services.items() if service.get("command") == ["agent"]}


def test_compose_runs_the_central_worker_and_two_agents_at_different_locations(compose):
    path, data = compose
    services = data["services"]
    broker = services["api"]["environment"]["CELERY_BROKER_URL"]
    assert broker.startswith("redis://redis:6379/"), path.name
    assert broker != services["api"]["environment"]["RATELIMIT_STORAGE_URI"], "the broker gets its own Redis db"
    worker = services["worker"]
    assert worker["command"] == ["worker"] and worker["environment"]["CELERY_BROKER_URL"] == broker
    assert worker["env_file"] == services["api"]["env_file"], "the worker needs the api's database settings"
    assert worker["depends_on"]["api"] == {"condition": "service_healthy"}, "migrations are the api's"
    agents = agent_services(services)
    assert len(agents) >= 2, path.name
    locations = set()
    for name in agents:
        agent = services[name]
        env = agent["environment"]
        assert "env_file" not in agent and "volumes" not in agent, f"{name}: an agent gets the broker URL only"
        assert not {k for k in env if "DATABASE" in k or "POSTGRES" in k or k in SECRET_NAMES}, name
        assert env["CELERY_BROKER_URL"] == broker and env["AGENT_NAME"], name
        assert "NET_RAW" in agent.get("cap_add", []), f"{name}: probes need CAP_NET_RAW"
        assert agent["depends_on"] == {"redis": {"condition": "service_healthy"}}, name
        assert "app.agent.health" in " ".join(agent["healthcheck"]["test"]), name
        locations.add((env["AGENT_NAME"], env["AGENT_COUNTRY"], env["AGENT_CITY"]))
    api_weight = services["api"].get("cpu_shares", 1024)  # Docker's default weight
    assert worker["cpu_shares"] < api_weight and all(services[name]["cpu_shares"] < api_weight for name in agents), \
        "on a busy host the API's requests come first (docs/agents.md, CPU priority)"
    assert len({loc[0] for loc in locations}) == len(agents), "agent names must differ"
    assert len({loc[1:] for loc in locations}) == len(agents), "agents at different locations"


def test_dev_compose_uses_postgres_and_the_dev_template():
    services = load_compose(COMPOSE_DEV)["services"]
    assert services["api"]["env_file"] == ".env"
    assert re.fullmatch(r"postgresql://[^@]+@db:5432/probeops", services["api"]["environment"]["DATABASE_URL"])


def test_backend_compose_is_production_shaped():
    data = load_compose(COMPOSE_BACKEND)
    services = data["services"]
    for name in ("db", "redis"):
        assert "ports" not in services[name], f"{name} must not be published on a host port"
    assert all(p.startswith("127.0.0.1:") for p in services["api"]["ports"]), \
        "publish the API on loopback only, for the reverse proxy"
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always"), f"{name} has no restart policy"
    assert services["api"]["env_file"] == ".env.backend"
    assert services["db"]["env_file"] == ".env.backend"  # POSTGRES_PASSWORD
    assert services["api"]["environment"]["APP_ENV"] == "production"
    for name, service in services.items():
        env = service.get("environment") or {}
        assert not (SECRET_NAMES | {"DATABASE_URL"}) & set(env), f"{name}: secrets belong in .env.backend"
    assert not re.search(r"://[^/\s:@]+:[^@\s]+@", COMPOSE_BACKEND.read_text()), "credentials in the compose file"
    named = set(data["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in named, f"{volume}: use a named volume"


# --- Dockerfile -------------------------------------------------------------------------------

def dockerfile_instructions():
    """``[(INSTRUCTION, arguments)]`` with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        joined.append(current.strip())
        current = ""
    assert not current, "dangling line continuation"
    return [(item.split(None, 1)[0].upper(), item.split(None, 1)[1] if " " in item else "") for item in joined]


def test_dockerfile_runs_start_sh():
    steps = dockerfile_instructions()
    entry = [args for op, args in steps if op in ("ENTRYPOINT", "CMD")]
    assert entry, "no ENTRYPOINT/CMD"
    last = entry[-1]
    command = json.loads(last) if last.startswith("[") else last.split()
    assert command[0] in ("/app/start.sh", "./start.sh"), f"the container must start with start.sh, not {command}"
    assert steps[0] == ("FROM", "python:3.11-slim-bookworm")


def test_dockerfile_installs_system_wide_and_grants_raw_sockets_to_a_non_root_user(known_names):
    steps = dockerfile_instructions()
    runs = " ".join(args for op, args in steps if op == "RUN")
    assert re.search(r"pip install (-\S+ )*-r requirements\.txt", runs)
    assert "venv" not in runs, "install system-wide: start.sh then creates no virtualenv"
    assert "libcap2-bin" in runs
    assert re.search(r'setcap cap_net_raw\+ep "\$\(readlink -f', runs), "setcap the real python binary"
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "run as a non-root user"
    order = [op for op, _ in steps]
    last_setcap = max(i for i, (op, args) in enumerate(steps) if op == "RUN" and "setcap" in args)
    assert last_setcap < len(order) - 1 - order[::-1].index("USER"), "setcap must run (as root) before USER"
    health = [args for op, args in steps if op == "HEALTHCHECK"]
    assert health and "/health" in health[0] and "urllib" in health[0]
    env_names = set()
    for op, args in steps:
        if op == "ENV":
            env_names |= set(re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", args))
    assert env_names, "no ENV parsed"
    assert env_names <= known_names | PYTHON_RUNTIME_NAMES, env_names - known_names - PYTHON_RUNTIME_NAMES
    assert "/app/instance" in " ".join(args for op, args in steps if op == "VOLUME")


def test_dockerignore_keeps_secrets_and_local_state_out():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for required in (".env", ".venv", "instance", ".git"):
        assert required in patterns, f".dockerignore must exclude {required}"
    assert ".env.*" in patterns or ".env.backend" in patterns
    assert not {"!.env", "!.env.backend"} & patterns, "never re-include the real env files"
    assert "start.sh" not in patterns and "migrations" not in patterns and "app" not in patterns


def test_start_sh_is_executable():
    assert os.access(ROOT / "start.sh", os.X_OK)
