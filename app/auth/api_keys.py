"""API key secrets: ``probeops.<secret>``, stored as a SHA-256 hash plus a display prefix."""
import hashlib
import secrets

KEY_PREFIX = "probeops."
DISPLAY_CHARS = 8  # characters of the secret kept in clear for the masked form


def generate_key():
    """Return ``(full_key, key_hash, display_prefix)`` for a new key."""
    full_key = KEY_PREFIX + secrets.token_urlsafe(32)
    return full_key, hash_key(full_key), full_key[: len(KEY_PREFIX) + DISPLAY_CHARS]


def hash_key(full_key):
    """SHA-256 hex of the whole key: keys are 256-bit random, so a fast hash is safe.

    The lookup is by this hash through a unique index, so comparison happens on digests of
    the secret, never on the secret itself, and leaks nothing through timing.
    """
    return hashlib.sha256(full_key.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_key(value):
    """Cheap shape check before touching the database."""
    return value.startswith(KEY_PREFIX) and 16 <= len(value) <= 200


def mask(prefix):
    """The form shown after creation: prefix and an ellipsis."""
    return prefix + "..."
