"""``GET /metrics`` (Prometheus text format) and one log line and count per HTTP request.

``/metrics`` is a 404 (the API's JSON error) unless ``METRICS_ENABLED``; with ``METRICS_TOKEN``
set it wants ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time) and answers
401 otherwise. It is not an API operation (not in /openapi.json) and has no rate limit: a
scraper calls it every few seconds.

Each request is counted by its URL rule (``/archives/<table_name>``, never the path, so the labels
stay few) and logged once (logger ``archiver.requests``, ``event`` ``http.request``): method,
route, status, duration in ms and the caller's user id when a token was verified. Never the path,
the query string, a header or a body.
"""
from __future__ import annotations

import hmac
import logging
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from flask_jwt_extended import get_jwt_identity

from ..errors import NotFound, Unauthenticated
from ..services import monitoring

log = logging.getLogger("archiver.requests")
bp = Blueprint("metrics", __name__)
#: The route label of a request that matched no URL rule (404, 405).
UNMATCHED = "unmatched"


@bp.get("/metrics")
def metrics() -> Response:
    """This process's metrics, in Prometheus text format (or OpenMetrics, when asked for)."""
    found = monitoring.current_metrics()
    if found is None:
        raise NotFound()
    token = current_app.config["METRICS_TOKEN"]
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthenticated("A valid metrics token is required", code="metrics_token")
    body, content_type = found.exposition(request.headers.get("Accept"))
    return Response(body, content_type=content_type)


def _caller_id() -> str | None:
    """The user id of a token verified during this request (None: no token, or none verified)."""
    try:
        identity = get_jwt_identity()
    except RuntimeError:  # no token was verified in this request
        return None
    return None if identity is None else str(identity)


def _started() -> None:
    g.archiver_request_t0 = time.perf_counter()


def _answered(response: Response) -> Response:
    t0 = g.get("archiver_request_t0")
    seconds = time.perf_counter() - t0 if t0 is not None else 0.0
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    user = _caller_id()
    ms = round(seconds * 1000, 1)
    log.info("%s %s %s %.1f ms%s", request.method, route, response.status_code, ms,
             f" user {user}" if user is not None else "",
             extra={"event": "http.request", "method": request.method, "route": route,
                    "status": response.status_code, "duration_ms": ms, "user_id": user})
    monitoring.request_answered(request.method, route, response.status_code, seconds)
    return response


def register_monitoring(app: Flask) -> None:
    """The /metrics route and the per-request log line and counts."""
    # First of the before-request hooks, so that one answering early (a rate limit, a body
    # refused) is timed too; after_request hooks run on every answer, errors included.
    app.before_request_funcs.setdefault(None, []).insert(0, _started)
    app.after_request(_answered)
    app.register_blueprint(bp)
