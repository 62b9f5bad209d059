"""For the people who run the backend: /health (and /), /metrics, /sync."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from backend.serving.model import PayloadError
from backend.serving.request_body import project_of, read_json_body
from backend.serving.routes import served

operations = Blueprint("operations", __name__)


@operations.get("/")
@operations.get("/health")
def health():
    """`UP` or `DEGRADED` (with what is degraded); engine, model (its prefix and source), index, concepts, label
    routing, cache, the store of record (kind, absolute location, counts), data directory, intake limits, accepted
    links, learned terms per project, training state."""
    s = served()
    model, config, info, store = s.model, s.config, s.info, s.store
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
        accepted_links=facts.get("accepted_links"), learned_terms=learned, training=_training(s.retrainer),
        routing=describe.get("routing"), encoder=_encoder_facts(model, describe, info),
        serving={"hybrid": {k: describe[k] for k in ("method", "weight", "learned_similarity")
                            if k in describe} or None,
                 "abbreviations": describe.get("abbreviations"), "code_prior": False,
                 "reranker": (describe.get("reranker") or {}).get("model")})


@operations.get("/metrics")
def get_metrics():
    """Prometheus text format, summed over every gunicorn worker (requests, tasks, spans, latency histograms,
    4xx/5xx, picker fetches) and, from the store, webhooks by action and outcome, annotations, accepted links."""
    from backend.serving.metrics import CONTENT_TYPE

    return Response(served().metrics.exposition(), mimetype=CONTENT_TYPE)


@operations.post("/sync")
def sync():
    """`{"project": N}`: rebuild the project's accepted links from Label Studio (the address and token its /setup
    sent); the report of what differed (a project whose export takes over a minute: `clinlinker sync`)."""
    from backend.records.resync import resync_project

    s = served()
    data = read_json_body(request)
    project = project_of(data.get("project"))
    if not project:
        raise PayloadError("project: the Label Studio project id to resynchronise")
    known = s.store.get_project(project) if s.store is not None else None
    if not known:
        raise PayloadError(f"project: {project} has not connected to this backend (no /setup seen with its "
                           "Label Studio address); run `clinlinker sync --url --token --project` instead")
    # within gunicorn's worker timeout; a project too large for that is resynced with the CLI
    report = resync_project(s.store, s.config, known["hostname"], known["access_token"], project, timeout=60)
    return jsonify(report)


def _training(retrainer) -> dict:
    if retrainer is None:
        return {"status": "unavailable", "reason": "no store"}
    why_not = retrainer.unavailable()
    state = retrainer.state()
    if why_not:
        state = {**state, "available": False, "reason": why_not}
    return {**state, "every": retrainer.config.retrain_every or None}


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

