"""Where the CLI finds the server and its API key: environment first, then the 0600 config file."""
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:5000"
FILE_MODE = 0o600
DIR_MODE = 0o700


class ConfigError(Exception):
    """The config file exists but cannot be read as the CLI wrote it."""


def config_path():
    """``$PROBEOPS_CONFIG``, else ``$XDG_CONFIG_HOME/probeops/config.json`` (``~/.config`` by default)."""
    explicit = os.environ.get("PROBEOPS_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "probeops" / "config.json"


def load_file(path=None):
    """The config file's JSON object; ``{}`` when there is none."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path} is not valid JSON; fix it or run `probeops login` again") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def save_file(data, path=None):
    """Write the config atomically, readable by its owner only (0600, its folder 0700)."""
    path = path or config_path()
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


@dataclass(frozen=True)
class Settings:
    """The server's base URL and the API key to send (None: not logged in)."""

    url: str
    api_key: str | None


def resolve(url_option=None):
    """``--url`` > ``PROBEOPS_URL`` > the file; ``PROBEOPS_API_KEY`` > the file."""
    stored = load_file()
    url = url_option or os.environ.get("PROBEOPS_URL") or stored.get("url") or DEFAULT_URL
    key = os.environ.get("PROBEOPS_API_KEY") or stored.get("api_key") or None
    return Settings(url=url.rstrip("/"), api_key=key)
