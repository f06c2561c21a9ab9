"""Password normalisation and hashing with bcrypt.

Passwords are normalised to NFKC before hashing and before checking (NIST SP 800-63B
5.1.1.2), so the same password typed on keyboards that compose characters differently (NFC
``é`` or NFD ``e`` + combining accent) is the same password. NFKC of ASCII is itself, so
every hash of an ASCII password stays valid.

bcrypt reads at most 72 bytes, and bcrypt 5 refuses longer input. Passwords are then reduced
to a fixed-length SHA-256 digest (base64, 44 bytes), so every byte of a long or multi-byte
password counts and nothing can raise on length.
"""
import base64
import hashlib
import unicodedata

import bcrypt


def normalize_password(password):
    """The password as it is hashed and compared: NFKC."""
    return unicodedata.normalize("NFKC", password)


def password_problem(password, min_length, max_length):
    """Why ``password`` is refused (a sentence), or None; lengths count normalised characters."""
    normalized = normalize_password(password)
    if not normalized.strip():
        return "Must not be made only of whitespace."
    if not min_length <= len(normalized) <= max_length:
        return f"Must be between {min_length} and {max_length} characters."
    return None


def _prehash(password):
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password, rounds):
    """Return the bcrypt hash (str) of the normalised ``password`` at cost ``rounds``."""
    return bcrypt.hashpw(_prehash(normalize_password(password)), bcrypt.gensalt(rounds)).decode("ascii")


def _matches(password, password_hash):
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))
    except ValueError:  # a malformed stored hash never authenticates
        return False


def verify_password(password, password_hash):
    """``(matches, legacy)``: ``legacy`` is True when only the un-normalised form matched.

    A non-ASCII password set before normalisation was hashed as typed; it still logs in (typed
    the same way), and the caller should then store a new hash of the normalised form.
    """
    normalized = normalize_password(password)
    if _matches(normalized, password_hash):
        return True, False
    if normalized != password and _matches(password, password_hash):
        return True, True
    return False, False


def check_password(password, password_hash):
    """True when ``password`` matches ``password_hash``."""
    return verify_password(password, password_hash)[0]


_dummy_hashes = {}


def dummy_hash(rounds):
    """A hash to check against when the user does not exist, so both paths cost one bcrypt."""
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = hash_password("not-a-real-password", rounds)
    return _dummy_hashes[rounds]
