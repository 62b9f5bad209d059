"""Label Studio's ML backend protocol: /setup, /predict, /webhook, /train, /versions."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from backend.records.webhooks import WebhookError, intake
from backend.serving.model import PayloadError
from backend.serving.request_body import project_of, read_json_body
from backend.serving.routes import served, unavailable

log = logging.getLogger("backend")
protocol = Blueprint("protocol", __name__)


@protocol.post("/setup")
def setup():
    """Label Studio's handshake: checks the labeling config, returns `model_version`; remembers the project's
    Label Studio address and token for `/sync`."""
    s = served()
    data = read_json_body(request)
    schema = data.get("schema")
    if schema is not None and not isinstance(schema, str):
        raise PayloadError("schema: expected the labeling config XML as a string")
    project = project_of(data.get("project"))
    answer = s.model.setup(project, schema)
    hostname, token = data.get("hostname"), data.get("access_token")
    if project and s.store is not None and isinstance(hostname, str) and isinstance(token, str) and hostname \
            and token and len(hostname) < 2000 and len(token) < 2000:
        try:  # remembered for a resync from Label Studio (POST /sync); Label Studio calls /setup often
            known = s.store.get_project(project)
            if not known or (known["hostname"], known["access_token"]) != (hostname, token):
                s.store.set_project(project, hostname, token)
        except SQLAlchemyError as exc:
            log.warning("cannot remember project %s's Label Studio address (%s)", project, exc)
    return jsonify(answer)


@protocol.post("/predict")
def predict():
    """One prediction per task (spans from the task data, its annotations or the interactive `context`); a 400
    names the field of a bad payload, a 413 the limit a request went over."""
    started = time.perf_counter()
    s = served()
    data = read_json_body(request)
    tasks = data.get("tasks")
    if not isinstance(tasks, list):
        raise PayloadError("tasks: expected a list of task objects")
    params = data.get("params")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise PayloadError("params: expected an object")
    context = params.get("context")
    if context is not None and not isinstance(context, dict):
        raise PayloadError("params.context: expected an object or null")
    label_config = data.get("label_config")
    if label_config is not None and not isinstance(label_config, str):
        raise PayloadError("label_config: expected the labeling config XML as a string")
    results = s.model.predict(tasks, context=context, label_config=label_config,
                              project=project_of(data.get("project")))
    metrics = s.metrics
    metrics.predict_requests.inc()
    metrics.predict_tasks.inc(len(tasks))
    metrics.predict_spans.inc(sum(1 for r in results for item in r["result"] if item.get("type") == "taxonomy"))
    metrics.predict_seconds.observe(time.perf_counter() - started)
    return jsonify(results=results, model_version=results[0]["model_version"] if results else s.model.model_version)


@protocol.post("/webhook")
def webhook():
    """Label Studio's events, checked (a 400 names the field) and stored before the answer: `{"status":
    "accepted", "outcomes": {"applied"|"duplicate"|"stale"|"gone"|"deleted": n}}`, or `"ignored"` for actions
    with nothing to learn."""
    started = time.perf_counter()
    s = served()
    data = read_json_body(request)
    if s.store is None:
        raise PayloadError("this backend keeps no store: webhooks are not accepted")
    try:
        outcome = intake(s.store, data, doc_field=s.config.doc_field, labels=s.config.labels)
    except WebhookError as exc:
        raise PayloadError(str(exc)) from None
    except SQLAlchemyError as exc:
        return unavailable("webhook", exc)
    s.metrics.webhook_seconds.observe(time.perf_counter() - started)
    retrainer = s.retrainer
    if retrainer is not None:
        if outcome["action"] == "START_TRAINING":
            outcome["training"] = retrainer.request("training requested from Label Studio")
        elif outcome["outcomes"].get("applied"):
            retrainer.links_changed()
    # accepted: every fact was weighed and committed (its outcome says whether it changed anything)
    return jsonify(status="accepted" if outcome["outcomes"] else "ignored", **outcome), 200


@protocol.post("/train")
def train():
    """*Start training*: starts a background fine-tuning, or a 409 with the reason when the served engine has no
    model to fine-tune."""
    s = served()
    retrainer = s.retrainer
    why_not = retrainer.unavailable() if retrainer is not None else "no store to record the request"
    if why_not:  # say so, instead of queueing what can never run
        s.metrics.errors.labels("4xx").inc()
        return jsonify(error=f"cannot train: {why_not}", status="unavailable"), 409
    return jsonify(retrainer.request("training requested from Label Studio (/train)")), 200


@protocol.get("/versions")
def versions():
    """The model version served (Label Studio's model-version list)."""
    model = served().model
    return jsonify(versions=[model.model_version], model_version=model.model_version)
