"""Password hashing with bcrypt.

bcrypt reads at most 72 bytes, and bcrypt 5 refuses longer input. Passwords are first
reduced to a fixed-length SHA-256 digest (base64, 44 bytes), so every byte of a long or
multi-byte password counts and nothing can raise on length.
"""
import base64
import hashlib

import bcrypt


def _prehash(password):
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password, rounds):
    """Return the bcrypt hash (str) of ``password`` at cost ``rounds``."""
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def check_password(password, password_hash):
    """True when ``password`` matches ``password_hash``."""
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))
    except ValueError:  # a malformed stored hash never authenticates
        return False


_dummy_hashes = {}


def dummy_hash(rounds):
    """A hash to check against when the user does not exist, so both paths cost one bcrypt."""
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = hash_password("not-a-real-password", rounds)
    return _dummy_hashes[rounds]
