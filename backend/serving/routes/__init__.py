"""The backend's HTTP routes, one blueprint per caller: `protocol` (Label Studio's ML backend protocol: /setup,
/predict, /webhook, /train, /versions), `picker` (the coder's browser: /taxonomy, /search) and `operations` (the
people who run the backend: /health, /metrics, /sync). Each handler translates JSON to calls on the model or the
store and back; what they share (the loaded model, the store, the metrics) is the app's `Served`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import current_app, jsonify

log = logging.getLogger("backend")


@dataclass
class Served:
    """What one backend process serves, loaded once and shared by every route."""

    model: object  # ClinLinkerModel
    config: object  # BackendConfig
    metrics: object  # Metrics
    info: dict  # what loading found: demo, cache, store, retrainer, hardware
    worker: dict  # the housekeeping thread of this process

    @property
    def store(self):
        return self.info.get("store")

    @property
    def retrainer(self):
        return self.info.get("retrainer")


def served() -> Served:
    return current_app.extensions["clinlinker"]


def unavailable(what: str, exc: Exception):
    """A 503 that says nothing was accepted, for a request the store of record could not take."""
    log.error("%s: the store of record failed (%s: %s)", what, type(exc).__name__, str(exc).splitlines()[0][:300])
    served().metrics.errors.labels("5xx").inc()
    return jsonify(error=f"{what}: the store of record is unavailable ({type(exc).__name__}); nothing was "
                         "accepted, try again"), 503, {"Retry-After": "5"}
