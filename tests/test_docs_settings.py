"""Every setting the code reads is documented (docs/configuration.md, docs/START_SCRIPT.md), and
every setting the docs list is read somewhere (app/, start.sh): the two cannot drift apart."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READERS = (
    r"""\b_?(?:env|int|float|bool|list|quota)\(\s*["']([A-Z][A-Z0-9_]+)["']""",  # app/config.py helpers
    r"""environ(?:\.get)?[\[(]\s*["']([A-Z][A-Z0-9_]+)["']""",                  # os.environ (agent, tools)
    r"""getenv\(\s*["']([A-Z][A-Z0-9_]+)["']""",
)
SHELL_READER = r"\$\{([A-Z][A-Z0-9_]+):?[-?]"  # ${NAME:-default}: a setting (not a variable the script sets)
# Read by tools or the environment, not settings an operator tunes in this table.
NOT_SETTINGS = {"PATH", "HOME", "CI", "FLASK_APP", "PROBEOPS_SKIP_DOTENV", "VIRTUAL_ENV", "PYTHONPATH", "USER",
                "SERVER_SOFTWARE", "REMOTE_ADDR", "XDG_RUNTIME_DIR"}


def read_by_code():
    names = set()
    for path in list((ROOT / "app").rglob("*.py")) + [ROOT / "main.py"]:
        text = path.read_text()
        for pattern in READERS:
            names.update(re.findall(pattern, text))
    names.update(re.findall(SHELL_READER, (ROOT / "start.sh").read_text()))
    return {name for name in names if not name.startswith("HTTP_")} - NOT_SETTINGS  # HTTP_*: WSGI headers


def documented():
    """The settings column of the tables in docs/configuration.md (first column) and
    docs/START_SCRIPT.md (Gunicorn flags and the setting behind each, second column)."""
    names = set()
    for doc, column in (("configuration.md", 1), ("START_SCRIPT.md", 2)):
        for line in (ROOT / "docs" / doc).read_text().splitlines():
            cells = line.split("|")
            if line.startswith("| `") and len(cells) > column:
                names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[column]))
    return names


def test_every_setting_the_code_reads_is_documented():
    missing = sorted(read_by_code() - documented())
    assert not missing, f"read by the code but not in docs/configuration.md: {missing}"


def test_every_documented_setting_is_read_by_the_code():
    unknown = sorted(documented() - read_by_code())
    assert not unknown, f"in docs/configuration.md but read nowhere: {unknown}"
