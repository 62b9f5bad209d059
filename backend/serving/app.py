"""The Flask application (factory) implementing Label Studio's ML backend protocol.

It only translates JSON to calls on `ClinLinkerModel` and back; no ML logic lives here.
Run in production with gunicorn: `clinlinker serve` (or `gunicorn 'backend.serving.app:create_app()'`).
One file of ~570 lines: the routes of one Flask app share its closure (config, model, store); each handler is a
few lines of translation, and the protocol reads best in one place.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import os
import re
import sys
import threading
import time

from flask import Flask, Response, jsonify, request
from flask_cors import CORS
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from clinlinker.encode.cache import _redact
from clinlinker.errors import ClinlinkerError

from backend.serving.config import BackendConfig
from backend.labelstudio.label_config import LabelConfigError
from backend.serving.model import CURRENT_INDEX, ClinLinkerModel, PayloadError, TooMuchWork
from backend.serving.request_body import read_json_body

log = logging.getLogger("backend")
TAXONOMY_MAX_AGE = 5  # seconds a browser may reuse a candidate list without asking again
DEMO_GAZETTEER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "clinlinker", "data",
                              "demo_gazetteer.tsv")
DEMO_HIERARCHY = os.path.join(os.path.dirname(DEMO_GAZETTEER), "demo_hierarchy.tsv")
DEMO_BANNER = ("\n" + "!" * 78 + "\n!! NO GAZETTEER CONFIGURED: serving the DEMO gazetteer shipped with clinlinker\n"
               "!! ({concepts} hand-written concepts) on the lexical char-ngrams engine.\n"
               "!! Candidates are for trying the tool only. For real coding build an index of your\n"
               "!! gazetteer (`clinlinker index ... --out DIR`) and set CLINLINKER_INDEX=DIR.\n" + "!" * 78)


def _encoder_facts(model, describe: dict, info: dict) -> dict:
    """The precision and runtime the encoder runs in, why (the index's record), and what this hardware runs fast."""
    if "hardware" not in info:
        from clinlinker.evaluate.precision import detect

        info["hardware"] = detect()
    manifest = getattr(model.linker.index, "manifest", None) or {}
    return {"precision": describe.get("precision"), "runtime": describe.get("runtime"),
            "prefix": manifest.get("prefix", describe.get("prefix")),
            "model_source": manifest.get("model_source") or describe.get("source"),
            "precision_choice": {k: v for k, v in (manifest.get("precision_choice") or {}).items() if k != "hardware"}
            or None, "hardware": info["hardware"]}


def load_model(config: BackendConfig) -> tuple[ClinLinkerModel, dict]:
    """Load the index, the encoder and the store once, at process start."""
    from clinlinker.encode.cache import make_cache
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.search.index import build_index
    from clinlinker.linking.linker import Linker
    from clinlinker.kb.routing import routing_from_setting

    from backend.records.learning import LearnedLayers
    from backend.serving.retrain import Retrainer
    from backend.records.store import Store

    info = {"demo": config.index_dir is None}
    routing = routing_from_setting(config.routing)  # a bad file stops the start with file and key
    cache = make_cache(config.redis_url, prefix=config.cache_prefix + "emb:", ttl=config.cache_ttl)
    rerank_cache = make_cache(config.redis_url, prefix=config.cache_prefix + "rr:", ttl=config.cache_ttl)
    try:
        store = Store(config.database_url, config.data_path, candidates_ttl_days=config.candidates_ttl_days)
    except SQLAlchemyError as exc:
        raise ClinlinkerError(f"cannot open the store of record ({_redact(config.database_url or '') or config.data_path}"
                              f"): {str(exc).splitlines()[0][:300]}") from None
    log.info("store of record: %s at %s", store.kind, store.location)

    # the re-ranker: the setting, else the one the index records (a fine-tuned index the backend publishes records
    # its retrained re-ranker, or the configured index's), else the configured index's
    def reranker_of(directory):
        if config.reranker:
            return config.reranker
        from clinlinker.search.index import read_manifest

        for candidate in dict.fromkeys((directory, config.index_dir)):
            try:
                record = read_manifest(candidate).get("reranker") if candidate else None
            except ClinlinkerError:
                record = None  # load_index below says what is wrong with the index
            if record:
                return record
        return None

    def load_linker(directory):
        return Linker.from_directory(directory, model=None if directory != config.index_dir else config.model,
                                     cache=cache, top_k=config.top_k, routing=routing,
                                     reranker=reranker_of(directory), rerank_depth=config.rerank_depth,
                                     rerank_cache=rerank_cache, runtime=config.runtime)

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
    layers = LearnedLayers(store, untouched=config.learn_untouched, across_projects=config.learn_across_projects)
    model = ClinLinkerModel(linker, config, store, layers=layers, index_dir=index_dir, load_index=load_linker)
    info["store"] = store
    for action, data in store.take_legacy_events():  # events an earlier version had not processed yet
        try:
            intake(store, config, data)
        except PayloadError as exc:
            log.warning("an unprocessed event of the earlier data directory was not accepted: %s", exc)
    model.sync_learned()
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


def intake(store, config: BackendConfig, data: dict) -> dict:
    """Check one webhook body and store its facts before answering. Raises PayloadError naming the field."""
    from backend.records.store import Applied
    from backend.records.webhooks import Deletion, WebhookError, parse

    try:
        action, facts = parse(data, doc_field=config.doc_field, labels=config.labels)
    except WebhookError as exc:
        raise PayloadError(str(exc)) from None
    outcomes: dict = {}
    for fact in facts:
        if isinstance(fact, Deletion):
            applied: Applied = store.delete_annotation(fact.project, fact.task, fact.annotation,
                                                       counter=f"webhook|{action}")
        else:
            for problem in fact.problems:
                log.warning("annotation %s of project %s: %s (not learned)", fact.annotation, fact.project, problem)
            applied = store.apply_annotation(fact.project, fact.task, fact.annotation, updated_at=fact.updated_at,
                                             body=fact.body, links=fact.links, cancelled=fact.cancelled,
                                             counter=f"webhook|{action}")
        outcomes[applied.outcome] = outcomes.get(applied.outcome, 0) + 1
    if not facts:
        store.count(f"webhook|{action}|received")
    return {"action": action, "outcomes": outcomes}


def create_app(config: BackendConfig | None = None, model: ClinLinkerModel | None = None,
               info: dict | None = None) -> Flask:
    from backend.serving.metrics import CONTENT_TYPE, Metrics

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
    store = info.get("store")
    metrics = Metrics(store)
    worker_state = {"pid": None, "worker": None}
    worker_lock = threading.Lock()
    auth_user = (config.auth_user or "").encode("utf-8")
    auth_password = (config.auth_password or "").encode("utf-8")
    picker_token = (config.picker_token or "").encode("utf-8")

    def ensure_worker():
        # Threads do not survive gunicorn's fork: start one per process, on its first request.
        if not config.worker or store is None or worker_state["pid"] == os.getpid():
            return
        with worker_lock:
            if worker_state["pid"] != os.getpid():
                from backend.records.housekeeping import Housekeeper

                worker_state["worker"] = Housekeeper(store).start()
                worker_state["pid"] = os.getpid()

    app.extensions["clinlinker"] = {"model": model, "config": config, "metrics": metrics, "info": info,
                                    "worker": worker_state}

    def same(given: str | None, expected: bytes) -> bool:
        # compared as UTF-8 bytes: hmac.compare_digest refuses non-ASCII text
        return hmac.compare_digest((given or "").encode("utf-8", "surrogatepass"), expected)

    @app.before_request
    def _auth_and_worker():
        ensure_worker()
        if request.method == "OPTIONS" or not config.auth_user:
            return None
        if (request.path in ("/taxonomy", "/search") and config.picker_token
                and same(request.args.get("token", ""), picker_token)):
            return None  # the browser cannot send Basic credentials to the picker's apiUrl
        auth = request.authorization
        if auth and auth.type == "basic" and same(auth.username, auth_user) and same(auth.password, auth_password):
            return None
        return Response('{"error": "authentication required"}', 401, mimetype="application/json",
                        headers={"WWW-Authenticate": 'Basic realm="clinlinker"'})

    def body() -> dict:
        return read_json_body(request)

    def project_of(value) -> str | None:
        """Label Studio's project field ("3.1795651414": id and creation time) -> "3"."""
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise PayloadError("project: expected Label Studio's project id")
        text = str(value).split(".", 1)[0].strip()
        if not re.fullmatch(r"[\w-]{1,64}", text):
            raise PayloadError("project: expected Label Studio's project id")
        return text

    def unavailable(what: str, exc: Exception):
        log.error("%s: the store of record failed (%s: %s)", what, type(exc).__name__, str(exc).splitlines()[0][:300])
        metrics.errors.labels("5xx").inc()
        return jsonify(error=f"{what}: the store of record is unavailable ({type(exc).__name__}); nothing was "
                             "accepted, try again"), 503, {"Retry-After": "5"}

    @app.errorhandler(TooMuchWork)
    def _too_much(exc):
        metrics.errors.labels("4xx").inc()
        return jsonify(error=str(exc)), 413

    @app.errorhandler(PayloadError)
    @app.errorhandler(LabelConfigError)
    def _bad_payload(exc):
        metrics.errors.labels("4xx").inc()
        return jsonify(error=str(exc)), 400

    @app.errorhandler(ClinlinkerError)
    def _user_error(exc):
        metrics.errors.labels("4xx").inc()
        return jsonify(error=str(exc)), 422

    @app.errorhandler(HTTPException)
    def _http(exc):
        if exc.code and exc.code < 500:
            metrics.errors.labels("4xx").inc()
        message = {413: f"request body larger than {config.max_body_mb:g} MB (CLINLINKER_MAX_BODY_MB)"}.get(
            exc.code, exc.description)
        return jsonify(error=message), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc):
        if isinstance(exc, SQLAlchemyError):
            return unavailable(f"{request.method} {request.path}", exc)
        log.exception("unexpected error on %s %s", request.method, request.path)
        metrics.errors.labels("5xx").inc()
        return jsonify(error=f"internal error ({type(exc).__name__}); see the backend log"), 500

    @app.get("/")
    @app.get("/health")
    def health():
        """`UP` or `DEGRADED` (with what is degraded); engine, model (its prefix and source), index, concepts, label
        routing, cache, the store of record (kind, absolute location, counts), data directory, intake limits, accepted
        links, learned terms per project, training state."""
        model.sync_learned()  # learned terms as the store has them, not as of the last prediction
        describe = model.linker.describe()
        cache = info.get("cache")
        facts = store.describe() if store is not None else {"kind": "none", "available": False}
        degraded = {}
        if not facts.get("available"):
            degraded["store"] = facts.get("error") or "no store of record"
        cache_state = cache.state() if cache is not None else {
            "backend": "none", "reason": "the lexical engine needs no embedding cache"}
        if cache_state.get("available") is False:
            degraded["cache"] = f"Redis unavailable ({cache_state.get('last_error')}): mentions are encoded again"
        reranker = getattr(model.linker, "reranker", None)
        rerank_cache = reranker.cache.state() if reranker is not None and reranker.cache is not None else None
        if rerank_cache is not None and rerank_cache.get("available") is False:
            degraded["rerank_cache"] = (f"Redis unavailable ({rerank_cache.get('last_error')}): the re-ranker reads "
                                        f"every pair again")
        learned = model.layers.describe() if model.layers is not None else None
        return jsonify(
            status="DEGRADED" if degraded else "UP", degraded=degraded, model_class=type(model).__name__,
            model_version=model.model_version,
            engine=describe["engine"], model=describe["model"], pooling=describe.get("pooling"),
            max_length=describe.get("max_length"), index_type=describe.get("index_type"),
            index=config.index_dir or "(demo gazetteer)", demo=bool(info.get("demo")),
            concepts=describe["concepts"], terms=describe["terms"], top_k=config.top_k,
            cache=cache_state, rerank_cache=rerank_cache, store=facts, data_dir=str(config.data_path),
            intake={"mode": "stored before answering", "pending": 0,
                    "limits": {"max_tasks": config.max_tasks, "max_spans": config.max_spans,
                               "max_spans_per_task": config.max_spans_per_task, "max_body_mb": config.max_body_mb}},
            accepted_links=facts.get("accepted_links"), learned_terms=learned, training=_training(info),
            routing=describe.get("routing"), encoder=_encoder_facts(model, describe, info),
            serving={"hybrid": {k: describe[k] for k in ("method", "weight", "learned_similarity")
                                if k in describe} or None,
                     "abbreviations": describe.get("abbreviations"), "code_prior": False,
                     "reranker": (describe.get("reranker") or {}).get("model")})

    @app.post("/setup")
    def setup():
        """Label Studio's handshake: checks the labeling config, returns `model_version`; remembers the project's
        Label Studio address and token for `/sync`."""
        data = body()
        schema = data.get("schema")
        if schema is not None and not isinstance(schema, str):
            raise PayloadError("schema: expected the labeling config XML as a string")
        project = project_of(data.get("project"))
        answer = model.setup(project, schema)
        hostname, token = data.get("hostname"), data.get("access_token")
        if project and store is not None and isinstance(hostname, str) and isinstance(token, str) and hostname \
                and token and len(hostname) < 2000 and len(token) < 2000:
            try:  # remembered for a resync from Label Studio (POST /sync); Label Studio calls /setup often
                known = store.get_project(project)
                if not known or (known["hostname"], known["access_token"]) != (hostname, token):
                    store.set_project(project, hostname, token)
            except SQLAlchemyError as exc:
                log.warning("cannot remember project %s's Label Studio address (%s)", project, exc)
        return jsonify(answer)

    @app.post("/predict")
    def predict():
        """One prediction per task (spans from the task data, its annotations or the interactive `context`); a 400
        names the field of a bad payload, a 413 the limit a request went over."""
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
        results = model.predict(tasks, context=context, label_config=label_config,
                                project=project_of(data.get("project")))
        metrics.predict_requests.inc()
        metrics.predict_tasks.inc(len(tasks))
        metrics.predict_spans.inc(sum(1 for r in results for item in r["result"] if item.get("type") == "taxonomy"))
        metrics.predict_seconds.observe(time.perf_counter() - started)
        return jsonify(results=results, model_version=results[0]["model_version"] if results else model.model_version)

    @app.post("/webhook")
    def webhook():
        """Label Studio's events, checked (a 400 names the field) and stored before the answer: `{"status":
        "accepted", "outcomes": {"applied"|"duplicate"|"stale"|"gone"|"deleted": n}}`, or `"ignored"` for actions
        with nothing to learn."""
        started = time.perf_counter()
        data = body()
        if store is None:
            raise PayloadError("this backend keeps no store: webhooks are not accepted")
        try:
            outcome = intake(store, config, data)
        except SQLAlchemyError as exc:
            return unavailable("webhook", exc)
        metrics.webhook_seconds.observe(time.perf_counter() - started)
        retrainer = info.get("retrainer")
        if retrainer is not None:
            if outcome["action"] == "START_TRAINING":
                outcome["training"] = retrainer.request("training requested from Label Studio")
            elif outcome["outcomes"].get("applied"):
                retrainer.links_changed()
        # accepted: every fact was weighed and committed (its outcome says whether it changed anything)
        return jsonify(status="accepted" if outcome["outcomes"] else "ignored", **outcome), 200

    @app.post("/train")
    def train():
        """*Start training*: starts a background fine-tuning, or a 409 with the reason when the served engine has no
        model to fine-tune."""
        retrainer = info.get("retrainer")
        why_not = retrainer.unavailable() if retrainer is not None else "no store to record the request"
        if why_not:  # say so, instead of queueing what can never run
            metrics.errors.labels("4xx").inc()
            return jsonify(error=f"cannot train: {why_not}", status="unavailable"), 409
        return jsonify(retrainer.request("training requested from Label Studio (/train)")), 200

    @app.post("/sync")
    def sync():
        """`{"project": N}`: rebuild the project's accepted links from Label Studio (the address and token its /setup
        sent); the report of what differed (a project whose export takes over a minute: `clinlinker sync`)."""
        from backend.records.resync import resync_project

        data = body()
        project = project_of(data.get("project"))
        if not project:
            raise PayloadError("project: the Label Studio project id to resynchronise")
        known = store.get_project(project) if store is not None else None
        if not known:
            raise PayloadError(f"project: {project} has not connected to this backend (no /setup seen with its "
                               "Label Studio address); run `clinlinker sync --url --token --project` instead")
        # within gunicorn's worker timeout; a project too large for that is resynced with the CLI
        report = resync_project(store, config, known["hostname"], known["access_token"], project, timeout=60)
        return jsonify(report)

    @app.get("/metrics")
    def get_metrics():
        """Prometheus text format, summed over every gunicorn worker (requests, tasks, spans, latency histograms,
        4xx/5xx, picker fetches) and, from the store, webhooks by action and outcome, annotations, accepted links."""
        return Response(metrics.exposition(), mimetype=CONTENT_TYPE)

    @app.get("/versions")
    def versions():
        """The model version served (Label Studio's model-version list)."""
        return jsonify(versions=[model.model_version], model_version=model.model_version)

    @app.get("/taxonomy")
    def taxonomy():
        """`?doc=ID[&project=N][&path=NODE]`: the picker's candidate list of a document (of one project; without it
        the newest of any), with an ETag and a 5 s private cache; `path` loads the node of mentions drawn after the
        task opened."""
        doc = request.args.get("doc", "").strip()
        if not doc:
            raise PayloadError("doc: the taxonomy URL needs ?doc=$doc_id (see label_studio_config/)")
        if len(doc) > 400 or "\x00" in doc:
            raise PayloadError("doc: a document name of more than 400 characters, or with a NUL character")
        metrics.taxonomy_requests.inc()
        # Label Studio fetches the list several times per task open: a short freshness and a validator let the
        # browser reuse one answer, and a changed list (new predictions for the document) gets a new ETag
        path = request.args.get("path")
        if path and "\x00" in path:
            raise PayloadError("path: a node with a NUL character")
        project = project_of(request.args.get("project") or None)
        response = jsonify(model.taxonomy(doc, path=path.strip() if path else None, project=project))
        response.add_etag()
        response.headers["Cache-Control"] = f"private, max-age={TAXONOMY_MAX_AGE}, must-revalidate"
        response.vary.add("Authorization")
        return response.make_conditional(request)

    @app.get("/search")
    def search():
        """`?q=TEXT[&k=25][&label=LABEL]`: the knowledge base searched by term or code, in a label's part; HTML for
        browsers, JSON otherwise."""
        query = request.args.get("q", "")
        if len(query) > 1000:
            raise PayloadError("q: a query of more than 1000 characters")
        try:
            k = max(1, min(int(request.args.get("k", "25")), 200))
        except ValueError:
            raise PayloadError("k: expected an integer") from None
        label = request.args.get("label", "").strip() or None
        if label is not None and label not in config.labels:
            raise PayloadError(f"label: {label!r} is not one of the labels served ({', '.join(config.labels)})")
        project = project_of(request.args.get("project") or None)
        results = model.search(query, k, label, project=project) if query.strip() else []
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
