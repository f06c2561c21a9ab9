"""ProbeOps. `create_app` lives in `app.factory` and loads lazily, so that the probe engines and
the agent (`app.probes`, `app.agent`) import without Flask or the web stack."""
import importlib


def __getattr__(name):
    """`from app import create_app` (and the factory's other names) without importing Flask early."""
    if name.startswith("__") or name == "factory":
        raise AttributeError(name)
    try:  # `from app import logging_setup` while app.factory is still importing: the submodule itself
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    factory = importlib.import_module("app.factory")
    try:
        return getattr(factory, name)
    except AttributeError:
        raise AttributeError(f"module 'app' has no attribute {name!r}") from None
