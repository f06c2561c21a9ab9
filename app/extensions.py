"""Flask extensions, created unbound here and bound in ``create_app``."""
import json

import flask_smorest
from flask import current_app
from flask_cors import CORS
from flask_limiter import Limit, Limiter
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from app.auth.rate_key import rate_limit_key
from app.json_input import BodyParser
from app.services import rate_storage  # noqa: F401 - registers the Redis storage the limiter will use

# Stable constraint names, so Alembic migrations name things the same on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ProbeOpsApi(Api):
    """flask-smorest's Api without its own error handlers (``app.errors`` owns every error body),
    serving the document finished by ``app.openapi`` (security, real errors, registry bounds)."""

    DEFAULT_ERROR_RESPONSE_NAME = None  # app.openapi lists each operation's real error statuses

    def _register_error_handlers(self):
        pass

    def init_app(self, app, *args, **kwargs):
        """Also serve the docs page (/api/docs) beside the document."""
        super().init_app(app, *args, **kwargs)
        from app.api import docs

        app.register_blueprint(docs.blp)

    def _openapi_json(self):
        from app.openapi import document

        return current_app.response_class(json.dumps(document(current_app), indent=2, sort_keys=False),
                                          mimetype="application/json")


# expire_on_commit=False: views keep using loaded rows after a commit without a hidden
# reload, so no connection is held while a probe runs.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
openapi = ProbeOpsApi()
cors = CORS()

# Every blueprint's body and query arguments go through the bounded JSON parser (set before
# the blueprints decorate their views, which binds the parser).
flask_smorest.Blueprint.ARGUMENTS_PARSER = BodyParser()
# Bad input is a 400 (app.errors turns the parser's abort into the contract's body), not 422.
flask_smorest.Blueprint.ARGUMENTS_PARSER.DEFAULT_VALIDATION_STATUS = 400


# flask-limiter: the storage (and its in-memory fallback) and the tighter per-route limits
# (login, register), which its decorators check. RATELIMIT_DEFAULT, ONE budget per user (per
# client IP when anonymous) across every endpoint, is counted by app.services.budget.
limiter = Limiter(
    key_func=rate_limit_key,
    # No per-endpoint default: without this, flask-limiter would read RATELIMIT_DEFAULT from the
    # config as a separate budget for each endpoint.
    default_limits=[Limit(lambda: "")],
)
