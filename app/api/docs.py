"""/api/docs: Swagger UI for /api/openapi.json, its assets served from the swagger-ui-bundle package
(no CDN: the page works with no internet)."""
import functools
import mimetypes

from flask import Blueprint, Response, abort
from swagger_ui_bundle import swagger_ui_path

from app.extensions import limiter

blp = Blueprint("docs", __name__)

ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"})

# Relative URLs: the page works wherever /api is mounted. validatorUrl null: no call to the
# public validator; persistAuthorization keeps the key across reloads.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>ProbeOps API</title>
  <link rel="stylesheet" type="text/css" href="docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="docs/init.js" charset="UTF-8"></script>
</body>
</html>
"""

INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: true,
    displayOperationId: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
};
"""


@blp.get("/api/docs")
@limiter.exempt
def page():
    """The Swagger UI page."""
    return Response(PAGE, mimetype="text/html")


@blp.get("/api/docs/init.js")
@limiter.exempt
def init_script():
    """Swagger UI's configuration: this server's document."""
    return Response(INIT, mimetype="text/javascript")


@functools.cache
def _asset_bytes(name):
    return (swagger_ui_path / name).read_bytes()


@blp.get("/api/docs/assets/<name>")
@limiter.exempt
def asset(name):
    """Swagger UI's own files, from the installed package (only the listed ones)."""
    if name not in ASSETS:
        abort(404)
    return Response(_asset_bytes(name), mimetype=mimetypes.guess_type(name)[0] or "application/octet-stream")
