"""The Flask application (factory) implementing Label Studio's ML backend protocol.

It only wires the parts together: what a process loads once (`backend.serving.loading`), the routes grouped by who
calls them (`backend.serving.routes`), Basic authentication (with the picker's token), and error handlers that turn
every failure into a JSON answer naming what is wrong. Run in production with gunicorn: `clinlinker serve` (or
`gunicorn 'backend.serving.app:serve_app()'`).
"""

from __future__ import annotations

import hmac
import logging
import os
import sys
import threading

from flask import Flask, Response, jsonify, request
from flask_cors import CORS
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from clinlinker.errors import ClinlinkerError

from backend.labelstudio.label_config import LabelConfigError
from backend.serving.config import BackendConfig
from backend.serving.loading import load_model
from backend.serving.model import ClinLinkerModel, PayloadError, TooMuchWork
from backend.serving.routes import Served, unavailable
from backend.serving.routes.operations import operations
from backend.serving.routes.picker import PATHS as PICKER_PATHS, picker
from backend.serving.routes.protocol import protocol

log = logging.getLogger("backend")


def create_app(config: BackendConfig | None = None, model: ClinLinkerModel | None = None,
               info: dict | None = None) -> Flask:
    from backend.serving.metrics import Metrics

    config = config or BackendConfig.from_env()
    if model is None:
        model, info = load_model(config)
    info = info or {}
    app = Flask("clinlinker-backend")
    app.config["MAX_CONTENT_LENGTH"] = int(config.max_body_mb * 1024 * 1024)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    CORS(app, origins=list(config.cors_origins), methods=["GET", "POST", "OPTIONS"],
         allow_headers=["Content-Type", "Authorization"], supports_credentials=True)
    metrics = Metrics(info.get("store"))
    served = Served(model=model, config=config, metrics=metrics, info=info, worker={"pid": None, "worker": None})
    app.extensions["clinlinker"] = served
    _authenticate(app, served)
    _answer_errors(app, served)
    for blueprint in (protocol, picker, operations):
        app.register_blueprint(blueprint)
    return app


def _authenticate(app: Flask, served: Served) -> None:
    """Basic authentication on every route when CLINLINKER_AUTH_USER is set (the picker's routes also take the
    picker token: a browser cannot send Basic credentials to the Taxonomy tag's apiUrl); and, on each process's
    first request, its housekeeping thread."""
    config = served.config
    auth_user = (config.auth_user or "").encode("utf-8")
    auth_password = (config.auth_password or "").encode("utf-8")
    picker_token = (config.picker_token or "").encode("utf-8")
    worker_lock = threading.Lock()

    def same(given: str | None, expected: bytes) -> bool:
        # compared as UTF-8 bytes: hmac.compare_digest refuses non-ASCII text
        return hmac.compare_digest((given or "").encode("utf-8", "surrogatepass"), expected)

    def ensure_worker():
        # Threads do not survive gunicorn's fork: start one per process, on its first request.
        state = served.worker
        if not config.worker or served.store is None or state["pid"] == os.getpid():
            return
        with worker_lock:
            if state["pid"] != os.getpid():
                from backend.records.housekeeping import Housekeeper

                state["worker"] = Housekeeper(served.store).start()
                state["pid"] = os.getpid()

    @app.before_request
    def _auth_and_worker():
        ensure_worker()
        if request.method == "OPTIONS" or not config.auth_user:
            return None
        if request.path in PICKER_PATHS and config.picker_token and same(request.args.get("token", ""), picker_token):
            return None
        auth = request.authorization
        if auth and auth.type == "basic" and same(auth.username, auth_user) and same(auth.password, auth_password):
            return None
        return Response('{"error": "authentication required"}', 401, mimetype="application/json",
                        headers={"WWW-Authenticate": 'Basic realm="clinlinker"'})


def _answer_errors(app: Flask, served: Served) -> None:
    """Every failure a JSON answer: 400 names the field, 413 the limit, 422 a user's error, 503 the store of record
    unavailable (nothing accepted), 500 only for a defect (logged with its traceback)."""
    errors = served.metrics.errors

    @app.errorhandler(TooMuchWork)
    def _too_much(exc):
        errors.labels("4xx").inc()
        return jsonify(error=str(exc)), 413

    @app.errorhandler(PayloadError)
    @app.errorhandler(LabelConfigError)
    def _bad_payload(exc):
        errors.labels("4xx").inc()
        return jsonify(error=str(exc)), 400

    @app.errorhandler(ClinlinkerError)
    def _user_error(exc):
        errors.labels("4xx").inc()
        return jsonify(error=str(exc)), 422

    @app.errorhandler(HTTPException)
    def _http(exc):
        if exc.code and exc.code < 500:
            errors.labels("4xx").inc()
        message = {413: f"request body larger than {served.config.max_body_mb:g} MB (CLINLINKER_MAX_BODY_MB)"}.get(
            exc.code, exc.description)
        return jsonify(error=message), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc):
        if isinstance(exc, SQLAlchemyError):
            return unavailable(f"{request.method} {request.path}", exc)
        log.exception("unexpected error on %s %s", request.method, request.path)
        errors.labels("5xx").inc()
        return jsonify(error=f"internal error ({type(exc).__name__}); see the backend log"), 500


def serve_app() -> Flask:
    """Entry point for gunicorn: a configuration or index problem is one clear log line, not a traceback."""
    # a thread waiting for the GIL (a webhook, a picker request) asks for it after 1 ms instead of Python's 5: the
    # computing thread gives it up at its next chance (bench/concurrency.py: webhook p99 under /predict load)
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
    logging.basicConfig(level=os.environ.get("CLINLINKER_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app()
    except ClinlinkerError as exc:
        log.error("cannot start the clinlinker backend: %s", exc)
        sys.exit(4)  # gunicorn: a worker that cannot boot stops the server
    from backend.serving.model import keep_out_of_collector

    keep_out_of_collector()  # the model is loaded: the collector's full passes need not walk it again
    return app
