"""How strong a JWT secret is: the rule production enforces at start (docs/configuration.md).

A secret must be random material written as hex (at least 64 characters) or base64/base64url
(at least 43 characters, ``=`` padding not counted): 256 bits at full entropy. Because such
strings can still be typed by hand, the strength is also estimated and must reach
MIN_ESTIMATED_BITS: every character counts log2 of the alphabet its character classes span
(lower case, upper case, digits, symbols; at most 4 bits for hex), except characters that
continue a run (``aaa``, ``abc``, ``cba``), repeat an earlier block of 4 or more characters,
or belong to a common word or a year, which count 1 bit each.
"""
import math
import re
import string

MIN_HEX_CHARS = 64
MIN_BASE64_CHARS = 43
MIN_ESTIMATED_BITS = 192
GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"

HEX = set(string.hexdigits)
BASE64 = set(string.ascii_letters + string.digits + "+/-_")
MIN_RUN = 3
MIN_REPEAT = 4
YEAR = re.compile(r"(19|20)\d\d")

# Words people put in hand-made secrets, and common English words of 4+ letters.
WORDS = frozenset("""
probeops probe probes production prod staging develop development testing test tests secret secrets
password passwd pass token tokens jwtkey jwtsecret signing key keys change changeme replace example
sample default admin administrator root user users login access secure security private public
server service services api flask django docker compose local localhost http https random string
value values generate generated please your here this that with from have what when where which
their there these those them they will would could should about after again against because
before being below between both down during each further having into more most other over same
some such than then through under until very while above also back been best better call came
come could does done even ever every first give good great just keep know last left life like
little long look made make many much must name never next only open part place right said
same show small still take tell thing think three time turn used want well went were work world
year years zero alpha beta gamma delta omega super master dragon monkey qwerty asdf zxcv letmein
welcome hello world love sunshine shadow princess football baseball trustno abcd abcdef company
corp internal prodkey mysecret topsecret strong stronger strongest long longer secretkey
""".split())


def _alphabet_bits(secret, is_hex):
    """log2 of the alphabet spanned by the character classes present (zxcvbn's brute-force cardinality)."""
    size = sum(len(cls) for cls in (string.ascii_lowercase, string.ascii_uppercase, string.digits)
               if any(ch in cls for ch in secret))
    size += 2 if any(ch in "+/-_" for ch in secret) else 0
    bits = math.log2(max(size, 2))
    return min(bits, 4.0) if is_hex else bits


def _runs(secret):
    """Flags for characters that continue a run of MIN_RUN+ equal steps of 0, +1 or -1 in code point."""
    patterned = [False] * len(secret)
    i = 0
    while i < len(secret) - 1:
        step = ord(secret[i + 1]) - ord(secret[i])
        j = i + 1
        while j + 1 < len(secret) and ord(secret[j + 1]) - ord(secret[j]) == step:
            j += 1
        if step in (-1, 0, 1) and j - i + 1 >= MIN_RUN:
            for k in range(i + 1, j + 1):
                patterned[k] = True
        i = j
    return patterned


def _repeats(secret, patterned):
    """Characters of a block of MIN_REPEAT+ characters that already appeared earlier."""
    for i in range(1, len(secret) - MIN_REPEAT + 1):
        if secret[i:i + MIN_REPEAT] in secret[:i + MIN_REPEAT - 1]:
            for k in range(i, i + MIN_REPEAT):
                patterned[k] = True


def _words(secret, patterned):
    """Characters of common words (case-insensitive, 4+ letters) and years."""
    lowered = secret.lower()
    for length in range(4, 20):
        for i in range(len(lowered) - length + 1):
            if lowered[i:i + length] in WORDS:
                for k in range(i, i + length):
                    patterned[k] = True
    for match in YEAR.finditer(secret):
        for k in range(match.start(), match.end()):
            patterned[k] = True


def estimated_bits(secret, is_hex=None):
    """The estimated entropy of ``secret`` in bits (see the module docstring)."""
    secret = secret.rstrip("=")
    if is_hex is None:
        is_hex = all(ch in HEX for ch in secret)
    patterned = _runs(secret)
    _repeats(secret, patterned)
    _words(secret, patterned)
    per_char = _alphabet_bits(secret, is_hex)
    return sum(1.0 if marked else per_char for marked in patterned)


def secret_problem(secret):
    """Why ``secret`` is not acceptable as JWT_SECRET_KEY (a sentence ending in how to make one), or None."""
    body = (secret or "").rstrip("=")
    if not body:
        return f"JWT_SECRET_KEY must be set in production: {GENERATE_HINT}"
    is_hex = all(ch in HEX for ch in body)
    if is_hex and len(body) < MIN_HEX_CHARS:
        return (f"JWT_SECRET_KEY is {len(body)} hex characters; at least {MIN_HEX_CHARS} (256 random bits) "
                f"are required: {GENERATE_HINT}")
    if not is_hex and not all(ch in BASE64 for ch in body):
        return ("JWT_SECRET_KEY must be random bytes written as hex (at least 64 characters) or "
                f"base64/base64url (at least 43 characters); it holds other characters: {GENERATE_HINT}")
    if not is_hex and len(body) < MIN_BASE64_CHARS:
        return (f"JWT_SECRET_KEY is {len(body)} base64 characters; at least {MIN_BASE64_CHARS} (256 random bits) "
                f"are required: {GENERATE_HINT}")
    bits = estimated_bits(body, is_hex)
    if bits < MIN_ESTIMATED_BITS:
        return (f"JWT_SECRET_KEY looks hand-made (runs, repeats or words): estimated {bits:.0f} bits of "
                f"randomness, at least {MIN_ESTIMATED_BITS} are required: {GENERATE_HINT}")
    return None
