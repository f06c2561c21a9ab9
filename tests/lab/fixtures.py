"""pytest plugin: the session-scoped ``lab`` fixture (see tests/lab/netlab.py for what it holds).

Load with ``pytest_plugins = ["tests.lab.fixtures"]``.  The lab is built once per session, its
routes verified with ``ip route get`` before any test gets it, and torn down at the end whatever
happened (also on Ctrl-C, and leftovers of a crashed run are removed at the next start).
"""
import atexit

import pytest

from tests.lab.netlab import Lab


@pytest.fixture(scope="session")
def lab():
    reason = Lab.available()
    if reason:
        pytest.skip(reason)
    instance = Lab()
    atexit.register(instance.down)  # belt and braces if the session dies without finalizers
    try:
        instance.up()  # raises LabError (an error, not a skip: root was available) if it fails
    except BaseException:
        instance.down()
        raise
    try:
        instance.verify_routes()
        yield instance
    finally:
        instance.down()
        atexit.unregister(instance.down)


@pytest.fixture
def lab_routes(lab):
    """Re-check, right before a test sends anything, that every lab address still routes into the lab."""
    lab.verify_routes()
    return lab
