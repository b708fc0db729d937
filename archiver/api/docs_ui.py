"""/docs: Swagger UI served from this origin (the files shipped in the flask-swagger-ui package).

The page has no inline script or style, so its Content-Security-Policy can allow only this
origin (``api/headers.py``); ``/docs/init.js`` points Swagger UI at ``/openapi.json``.
"""
from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, send_from_directory
from werkzeug.exceptions import NotFound

SWAGGER_DIST = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png",
          "favicon-16x16.png")

bp = Blueprint("docs-ui", __name__)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>archiver API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui" data-spec-url="/openapi.json"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""

_INIT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: document.getElementById("swagger-ui").dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout"
  });
});
"""


@bp.route("/docs")
@bp.route("/docs/")
def docs_page() -> Response:
    return Response(_PAGE, mimetype="text/html")


@bp.route("/docs/init.js")
def docs_init() -> Response:
    resp = Response(_INIT, mimetype="text/javascript")
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@bp.route("/docs/assets/<name>")
def docs_asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound()
    resp = send_from_directory(SWAGGER_DIST, name, max_age=86400)
    resp.headers["Cache-Control"] = "public, max-age=86400"
    return resp
