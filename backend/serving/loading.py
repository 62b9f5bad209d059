"""What a backend process loads once, at start: the store of record, the index (the configured one, a fine-tuned one
published by an earlier run, or the demo gazetteer, said loudly), the encoder and its caches, the learned terms and
the retrainer."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from clinlinker.encode.cache import _redact
from clinlinker.errors import ClinlinkerError

from backend.records.webhooks import WebhookError, intake
from backend.serving.config import BackendConfig
from backend.serving.model import CURRENT_INDEX, ClinLinkerModel

log = logging.getLogger("backend")
DEMO_GAZETTEER = str(Path(__file__).resolve().parents[2] / "clinlinker" / "data" / "demo_gazetteer.tsv")
DEMO_HIERARCHY = str(Path(DEMO_GAZETTEER).with_name("demo_hierarchy.tsv"))
DEMO_BANNER = ("\n" + "!" * 78 + "\n!! NO GAZETTEER CONFIGURED: serving the DEMO gazetteer shipped with clinlinker\n"
               "!! ({concepts} hand-written concepts) on the lexical char-ngrams engine.\n"
               "!! Candidates are for trying the tool only. For real coding build an index of your\n"
               "!! gazetteer (`clinlinker index ... --out DIR`) and set CLINLINKER_INDEX=DIR.\n" + "!" * 78)


def load_model(config: BackendConfig) -> tuple[ClinLinkerModel, dict]:
    """Load the index, the encoder and the store once, at process start."""
    from clinlinker.encode.cache import make_cache
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.search.index import build_index
    from clinlinker.linking.linker import Linker
    from clinlinker.kb.routing import routing_from_setting

    from backend.records.learning import LearnedLayers
    from backend.records.store import Store
    from backend.serving.retrain import Retrainer

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
                                     rerank_cache=rerank_cache, runtime=config.runtime,
                                     memo=config.search_memo)

    index_dir = config.index_dir
    if config.index_dir is None:
        index = build_index(load_knowledge_base([DEMO_GAZETTEER], DEMO_HIERARCHY))
        log.warning(DEMO_BANNER.format(concepts=len(index.kb)))
        linker = Linker(index, top_k=config.top_k, routing=routing, memo=config.search_memo)
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
            intake(store, data, doc_field=config.doc_field, labels=config.labels)
        except WebhookError as exc:
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
