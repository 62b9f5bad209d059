"""The Flask application (factory) implementing Label Studio's ML backend protocol.

It only translates JSON to calls on `ClinLinkerModel` and back; no ML logic lives here.
Run in production with gunicorn: `clinlinker serve` (or `gunicorn 'backend.app:create_app()'`).
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import os
import socket
import threading
import time
from collections import deque

from flask import Flask, Response, jsonify, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException

from clinlinker.errors import ClinlinkerError

from backend.config import BackendConfig
from backend.label_config import LabelConfigError
from backend.model import CURRENT_INDEX, ClinLinkerModel, PayloadError

log = logging.getLogger("backend")
TAXONOMY_MAX_AGE = 5  # seconds a browser may reuse a candidate list without asking again
DEMO_GAZETTEER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "clinlinker", "data",
                              "demo_gazetteer.tsv")
DEMO_HIERARCHY = os.path.join(os.path.dirname(DEMO_GAZETTEER), "demo_hierarchy.tsv")
DEMO_BANNER = ("\n" + "!" * 78 + "\n!! NO GAZETTEER CONFIGURED: serving the DEMO gazetteer shipped with clinlinker\n"
               "!! ({concepts} hand-written concepts) on the lexical char-ngrams engine.\n"
               "!! Candidates are for trying the tool only. For real coding build an index of your\n"
               "!! gazetteer (`clinlinker index ... --out DIR`) and set CLINLINKER_INDEX=DIR.\n" + "!" * 78)


def load_model(config: BackendConfig) -> tuple[ClinLinkerModel, dict]:
    """Load the index, the encoder and the stores once, at process start."""
    from clinlinker.cache import make_cache
    from clinlinker.gazetteer import load_knowledge_base
    from clinlinker.index import build_index
    from clinlinker.linker import Linker
    from clinlinker.routing import routing_from_setting

    from backend.retrain import Retrainer
    from backend.storage import RedisStore, SQLiteStore

    info = {"demo": config.index_dir is None}
    routing = routing_from_setting(config.routing)  # a bad file stops the start with file and key
    cache = make_cache(config.redis_url, prefix=config.cache_prefix + "emb:", ttl=config.cache_ttl)
    store = SQLiteStore(config.data_path / "backend.sqlite3")
    if config.redis_url:
        store = RedisStore(config.redis_url, store, prefix=config.cache_prefix,
                           consumer=f"{socket.gethostname()}-{os.getpid()}")

    def load_linker(directory):
        return Linker.from_directory(directory, model=None if directory != config.index_dir else config.model,
                                     cache=cache, top_k=config.top_k, routing=routing)

    index_dir = config.index_dir
    if config.index_dir is None:
        index = build_index(load_knowledge_base([DEMO_GAZETTEER], DEMO_HIERARCHY))
        log.warning(DEMO_BANNER.format(concepts=len(index.kb)))
        linker = Linker(index, top_k=config.top_k, routing=routing)
    else:
        linker = None
        published = json.loads(store.get_meta(CURRENT_INDEX) or "{}")
        if published.get("index_dir") and published.get("base_index") == config.index_dir:
            try:  # a model fine-tuned from this index by an earlier run: serve it again
                linker = load_linker(published["index_dir"])
                index_dir = published["index_dir"]
                log.warning("serving the fine-tuned index %s (fine-tuned from %s)", index_dir, config.index_dir)
            except ClinlinkerError as exc:
                log.error("cannot load the fine-tuned index %s (%s); serving %s", published["index_dir"], exc,
                          config.index_dir)
        if linker is None:
            linker = load_linker(config.index_dir)
    info["cache"] = cache if linker.index.engine != "lexical" else None
    model = ClinLinkerModel(linker, config, documents=_Documents(store), events=_Events(store), links=store,
                            index_dir=index_dir, load_index=load_linker)
    model.sync_learned()
    info["store"] = store
    info["retrainer"] = Retrainer(model, store, config)
    describe = linker.describe()
    log.info("serving %s engine: model %s, %d concepts, %d terms, index %s, model_version %s", describe["engine"],
             describe["model"], describe["concepts"], describe["terms"], config.index_dir or "(demo)",
             model.model_version)
    for label in config.labels:
        count = describe["routing"]["concepts_per_label"].get(label)
        log.info("label %s: %s", label, f"served from {count} of {describe['concepts']} concepts ({routing.source})"
                 if count is not None else "served from the whole knowledge base (not in the label routing)")
    return model, info


class _Documents:
    def __init__(self, store):
        self.store = store

    def put(self, doc, mentions):
        self.store.put_document(doc, mentions)

    def get(self, doc):
        return self.store.get_document(doc)


class _Events:
    def __init__(self, store):
        self.store = store

    def append(self, action, body):
        return self.store.append_event(action, body)


class Metrics:
    def __init__(self, window: int = 1000):
        self.started = time.time()
        self.counts = {"predict_requests": 0, "tasks": 0, "spans": 0, "errors_4xx": 0, "errors_5xx": 0,
                       "webhooks": 0, "train_requests": 0, "taxonomy_requests": 0}
        self.latencies = deque(maxlen=window)
        self.lock = threading.Lock()

    def add(self, **counts):
        with self.lock:
            for key, value in counts.items():
                self.counts[key] = self.counts.get(key, 0) + value

    def snapshot(self) -> dict:
        with self.lock:
            lat = sorted(self.latencies)
            counts = dict(self.counts)

        def pct(p):
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        return {**counts, "uptime_s": round(time.time() - self.started, 1),
                "predict_latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "n": len(lat)}}


def create_app(config: BackendConfig | None = None, model: ClinLinkerModel | None = None,
               info: dict | None = None) -> Flask:
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
    metrics = Metrics()
    store = info.get("store")
    worker_state = {"pid": None, "worker": None}
    worker_lock = threading.Lock()

    def ensure_worker():
        # Threads do not survive gunicorn's fork: start one per process, on its first request.
        if not config.worker or store is None or worker_state["pid"] == os.getpid():
            return
        with worker_lock:
            if worker_state["pid"] != os.getpid():
                from backend.worker import EventWorker

                worker_state["worker"] = EventWorker(store, doc_field=config.doc_field, labels=config.labels,
                                                     retrainer=info.get("retrainer")).start()
                worker_state["pid"] = os.getpid()

    app.extensions["clinlinker"] = {"model": model, "config": config, "metrics": metrics, "info": info,
                                    "worker": worker_state}

    @app.before_request
    def _auth_and_worker():
        ensure_worker()
        if request.method == "OPTIONS" or not config.auth_user:
            return None
        if (request.path in ("/taxonomy", "/search") and config.picker_token
                and hmac.compare_digest(request.args.get("token", ""), config.picker_token)):
            return None  # the browser cannot send Basic credentials to the picker's apiUrl
        auth = request.authorization
        if auth and auth.type == "basic" and hmac.compare_digest(auth.username or "", config.auth_user) and \
                hmac.compare_digest(auth.password or "", config.auth_password):
            return None
        return Response('{"error": "authentication required"}', 401, mimetype="application/json",
                        headers={"WWW-Authenticate": 'Basic realm="clinlinker"'})

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise PayloadError("request body must be a JSON object (Content-Type: application/json)")
        return data

    @app.errorhandler(PayloadError)
    @app.errorhandler(LabelConfigError)
    def _bad_payload(exc):
        metrics.add(errors_4xx=1)
        return jsonify(error=str(exc)), 400

    @app.errorhandler(ClinlinkerError)
    def _user_error(exc):
        metrics.add(errors_4xx=1)
        return jsonify(error=str(exc)), 422

    @app.errorhandler(HTTPException)
    def _http(exc):
        if exc.code and exc.code < 500:
            metrics.add(errors_4xx=1)
        message = {413: f"request body larger than {config.max_body_mb:g} MB (CLINLINKER_MAX_BODY_MB)"}.get(
            exc.code, exc.description)
        return jsonify(error=message), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("unexpected error on %s %s", request.method, request.path)
        metrics.add(errors_5xx=1)
        return jsonify(error=f"internal error ({type(exc).__name__}); see the backend log"), 500

    @app.get("/")
    @app.get("/health")
    def health():
        describe = model.linker.describe()
        cache = info.get("cache")
        return jsonify(
            status="UP", model_class=type(model).__name__, model_version=model.model_version,
            engine=describe["engine"], model=describe["model"], pooling=describe.get("pooling"),
            max_length=describe.get("max_length"), index_type=describe.get("index_type"),
            index=config.index_dir or "(demo gazetteer)", demo=bool(info.get("demo")),
            concepts=describe["concepts"], terms=describe["terms"], top_k=config.top_k,
            cache=cache.state() if cache is not None else {"backend": "none",
                                                           "reason": "the lexical engine needs no embedding cache"},
            store="redis" if config.redis_url else "sqlite",
            accepted_links=store.accepted_count() if store is not None else None,
            learned_terms=describe.get("learned"), training=_training(info), routing=describe.get("routing"))

    @app.post("/setup")
    def setup():
        data = body()
        schema = data.get("schema")
        if schema is not None and not isinstance(schema, str):
            raise PayloadError("schema: expected the labeling config XML as a string")
        return jsonify(model.setup(data.get("project"), schema))

    @app.post("/predict")
    def predict():
        started = time.perf_counter()
        data = body()
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
        results = model.predict(tasks, context=context, label_config=label_config)
        metrics.add(predict_requests=1, tasks=len(tasks), spans=sum(
            1 for r in results for item in r["result"] if item.get("type") == "taxonomy"))
        metrics.latencies.append(time.perf_counter() - started)
        return jsonify(results=results, model_version=results[0]["model_version"] if results else model.model_version)

    @app.post("/webhook")
    def webhook():
        data = body()
        action = data.get("action")
        if not isinstance(action, str) or not action:
            raise PayloadError("action: expected the webhook action name")
        metrics.add(webhooks=1)
        return jsonify(model.fit(action, data)), 200

    @app.post("/train")
    def train():
        data = request.get_json(silent=True)
        metrics.add(train_requests=1)
        retrainer = info.get("retrainer")
        why_not = retrainer.unavailable() if retrainer is not None else "no store to record the request"
        if why_not:  # say so, instead of queueing what can never run
            metrics.add(errors_4xx=1)
            return jsonify(error=f"cannot train: {why_not}", status="unavailable"), 409
        return jsonify(model.fit("START_TRAINING", data if isinstance(data, dict) else {})), 200

    @app.get("/metrics")
    def get_metrics():
        snapshot = metrics.snapshot()
        cache = info.get("cache")
        if cache is not None:
            snapshot["cache"] = cache.state()
        if store is not None:
            snapshot["events"] = store.event_counts()
            snapshot["accepted_links"] = store.accepted_count()
        return jsonify(snapshot)

    @app.get("/versions")
    def versions():
        return jsonify(versions=[model.model_version], model_version=model.model_version)

    @app.get("/taxonomy")
    def taxonomy():
        doc = request.args.get("doc", "").strip()
        if not doc:
            raise PayloadError("doc: the taxonomy URL needs ?doc=$doc_id (see label_studio_config/)")
        metrics.add(taxonomy_requests=1)
        # Label Studio fetches the list several times per task open: a short freshness and a validator let the
        # browser reuse one answer, and a changed list (new predictions for the document) gets a new ETag
        path = request.args.get("path")
        response = jsonify(model.taxonomy(doc, path=path.strip() if path else None))
        response.add_etag()
        response.headers["Cache-Control"] = f"private, max-age={TAXONOMY_MAX_AGE}, must-revalidate"
        response.vary.add("Authorization")
        return response.make_conditional(request)

    @app.get("/search")
    def search():
        query = request.args.get("q", "")
        try:
            k = max(1, min(int(request.args.get("k", "25")), 200))
        except ValueError:
            raise PayloadError("k: expected an integer") from None
        label = request.args.get("label", "").strip() or None
        if label is not None and label not in config.labels:
            raise PayloadError(f"label: {label!r} is not one of the labels served ({', '.join(config.labels)})")
        results = model.search(query, k, label) if query.strip() else []
        if "text/html" in request.headers.get("Accept", "") and request.args.get("format") != "json":
            token = request.args.get("token", "")  # kept on the page's own searches (the browser has no Basic auth)
            return Response(_search_page(query, results, label, config.labels, token), mimetype="text/html")
        return jsonify(query=query, label=label, candidates=results)

    return app


def _training(info: dict) -> dict:
    retrainer = info.get("retrainer")
    if retrainer is None:
        return {"status": "unavailable", "reason": "no store"}
    why_not = retrainer.unavailable()
    state = retrainer.state()
    if why_not:
        state = {**state, "available": False, "reason": why_not}
    return {**state, "every": retrainer.config.retrain_every or None}


def serve_app() -> Flask:
    """Entry point for gunicorn: a configuration or index problem is one clear log line, not a traceback."""
    import sys

    logging.basicConfig(level=os.environ.get("CLINLINKER_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return create_app()
    except ClinlinkerError as exc:
        log.error("cannot start the clinlinker backend: %s", exc)
        sys.exit(4)  # gunicorn: a worker that cannot boot stops the server


def _search_page(query: str, results: list[dict], label: str | None, labels, token: str = "") -> str:
    def row(c):
        matched = c.get("matched_term") or ""
        matched = f"«{html.escape(matched)}»" if matched and matched != c["preferred_term"] else ""
        parents = "<br>".join(f"⊂ <code>{html.escape(p['code'])}</code> {html.escape(p.get('term') or '')}"
                              for p in c.get("parents") or [])
        via = f" ({html.escape(c['via'])})" if c.get("via") else ""
        return (f"<tr><td><code>{html.escape(c['code'])}</code></td><td>{html.escape(c['preferred_term'])}</td>"
                f"<td>{matched}</td><td>{html.escape(c['semantic_tag'])}</td><td>{parents}</td>"
                f"<td>{c['score']:.3f}</td><td>{html.escape(c.get('evidence') or '')}{via}</td></tr>")

    options = "".join(f"<option value=\"{html.escape(lab)}\"{' selected' if lab == label else ''}>"
                      f"{html.escape(lab)}</option>" for lab in labels)
    return (f"<!doctype html><meta charset=utf-8><title>clinlinker: buscar</title>"
            f"<form><input name=q value=\"{html.escape(query)}\" autofocus size=50> "
            f"<select name=label><option value=\"\">todo el catálogo</option>{options}</select> "
            + (f"<input type=hidden name=token value=\"{html.escape(token)}\">" if token else "")
            + "<button>Buscar</button></form>"
            f"<p>Copie el código en el campo «¿Fuera de la lista? Escriba el código SNOMED CT…» de la mención "
            f"(A+B para compuestos, NO_CODE si ninguno).</p>"
            f"<table border=1 cellpadding=4><tr><th>código</th><th>término preferido</th><th>sinónimo que coincide</th>"
            f"<th>etiqueta</th><th>padres (is-a)</th><th>score</th><th>evidencia</th></tr>"
            f"{''.join(row(c) for c in results)}</table>")
