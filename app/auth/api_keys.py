"""API key secrets: ``probeops_<43 base62>_<6 base62 CRC32>``, stored as a SHA-256 hash plus a
display prefix.

The checksum (like GitHub's tokens) lets the server, and secret scanners, refuse a mistyped or
invented key without a database round trip. Keys made before it (``probeops.<43 url-safe>``)
keep working: they pass a shape check, then the lookup decides.
"""
import hashlib
import re
import secrets
import string
import zlib

KEY_PREFIX = "probeops_"
LEGACY_PREFIX = "probeops."
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
RANDOM_CHARS = 43  # 62**43 > 2**256
CHECKSUM_CHARS = 6  # 62**6 > 2**32
DISPLAY_CHARS = 8  # characters of the secret kept in clear for the masked form

# What a key may do; a key made without scopes (or before scopes existed) has them all.
SCOPES = ("probes:run", "history:read", "account:read")


def scopes_text(scopes):
    """The stored form of a scope list: space-separated in SCOPES order, NULL for all of them."""
    chosen = [scope for scope in SCOPES if scope in set(scopes or SCOPES)]
    return None if len(chosen) == len(SCOPES) else " ".join(chosen)


def scopes_list(text):
    """The scope list of a stored value (NULL = all)."""
    return list(SCOPES) if text is None else text.split()

KEY_RE = re.compile(rf"{KEY_PREFIX}([0-9A-Za-z]{{{RANDOM_CHARS}}})_([0-9A-Za-z]{{{CHECKSUM_CHARS}}})")
LEGACY_RE = re.compile(r"probeops\.[A-Za-z0-9_-]{43}")


def _base62(number, width):
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def checksum(random_part):
    """CRC32 of the random part, in 6 base62 characters."""
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_CHARS)


def generate_key():
    """Return ``(full_key, key_hash, display_prefix)`` for a new key."""
    random_part = "".join(secrets.choice(BASE62) for _ in range(RANDOM_CHARS))
    full_key = f"{KEY_PREFIX}{random_part}_{checksum(random_part)}"
    return full_key, hash_key(full_key), full_key[: len(KEY_PREFIX) + DISPLAY_CHARS]


def hash_key(full_key):
    """SHA-256 hex of the whole key: keys are 256-bit random, so a fast hash is safe.

    The lookup is by this hash through a unique index, so comparison happens on digests of
    the secret, never on the secret itself, and leaks nothing through timing.
    """
    return hashlib.sha256(full_key.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_key(value):
    """True for a well-formed key with a correct checksum (or a legacy key's shape): no database."""
    match = KEY_RE.fullmatch(value)
    if match is not None:
        return checksum(match.group(1)) == match.group(2)
    return LEGACY_RE.fullmatch(value) is not None


def mask(prefix):
    """The form shown after creation: prefix and an ellipsis."""
    return prefix + "..."
