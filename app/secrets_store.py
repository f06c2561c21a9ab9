"""The JWT secret when none is configured (development only).

Generated once and kept in the instance folder, so every worker and every restart agree.
Creation is atomic: each process writes its candidate to a private file and hard-links it
into place, which fails if the file exists; so when several workers start together,
exactly one candidate wins and every process reads that one.
"""
import os
import secrets


def load_or_create_secret(instance_path, filename="jwt_secret"):
    """Return the secret kept in ``instance_path/filename``, creating it on first use."""
    os.makedirs(instance_path, exist_ok=True)
    path = os.path.join(instance_path, filename)
    if not os.path.exists(path):
        candidate = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(candidate)
    with open(path) as handle:
        return handle.read().strip()
