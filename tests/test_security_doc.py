"""docs/security.md names a test for every defence: each named test must exist."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def named_tests():
    """(file, test name) for every ``tests/...py::name`` and ``::name`` (same file as before) in the doc."""
    text = (ROOT / "docs" / "security.md").read_text()
    current = None
    for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", text):
        path, name = match.groups()
        if path:
            current = path
        if name:
            yield current, name
        elif path:
            yield path, None


def test_every_test_named_in_the_security_doc_exists():
    missing = []
    for path, name in named_tests():
        file = ROOT / path
        if not file.exists():
            missing.append(path)
        elif name and not re.search(rf"def {re.escape(name)}\b", file.read_text()):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
