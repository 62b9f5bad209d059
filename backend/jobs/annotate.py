"""Bulk pre-annotation: a corpus in; Label Studio tasks with predictions out, exactly what /predict answers for the
same task and model version, plus a linking TSV of each span's top-1 and a JSONL of its top-k.

A run works in a work directory, in four steps, each resumable:

1. split: the corpus is read once, streaming (Label Studio tasks JSON or JSONL; a linking or spans TSV with the
   texts), checked task by task, and written as shards of --shard-size tasks; every distinct mention string of the
   whole corpus is listed once, in chunks (`plan.json` is written last: a run interrupted here starts over);
2. encode (dense engines): each chunk of distinct mentions is encoded once (through the embedding cache when one
   is configured) and saved as `vectors/chunk-N.npy` (on Ray, the chunks are handed out before the shards, to one
   pool of actors);
3. link: each shard is answered by the backend's own prediction code, its vectors read from the chunks, and its
   three outputs renamed into place when complete;
4. assemble: the shards' outputs are concatenated, in corpus order, into OUT/tasks.json, OUT/links.tsv and
   OUT/candidates.jsonl.

An interrupted run continues from its last finished chunk or shard; memory holds one shard and the table of
distinct mention strings, whatever the corpus size. Steps 2 and 3 run in this process, or on a Ray cluster
(`--ray`, or RAY_ADDRESS set): Ray Data maps the chunks, then the shards, over one pool of actors that each load
the model and the index once; every actor writes into the work directory, which must be visible to all nodes (one
machine, or a shared filesystem). The outputs are the same either way: the same code answers every shard.

One file of ~540 lines: the four resumable steps share the work directory's format (plan, chunks, shards); the
corpus readers are in corpus.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from backend.labelstudio.corpus import read_corpus
from clinlinker.errors import ClinlinkerError

log = logging.getLogger(__name__)

PLAN = "plan.json"
FORMAT = 1  # of the work directory


@dataclass
class AnnotateSettings:
    """Everything a worker needs to load the same model as the driver (it is sent to Ray actors)."""

    index: str | None = None  # None: the demo gazetteer, lexical engine (as the backend)
    model: str | None = None
    label_config: str | None = None  # XML text of the project's labeling config (None: the default)
    top_k: int = 25
    labels: tuple = ("ENFERMEDAD", "SINTOMA", "PROCEDIMIENTO")
    routing: str | None = None
    reranker: str | None = None
    redis_url: str | None = None
    runtime: str | None = None
    abbreviations: bool | None = None  # None: what the index manifest records (else on)
    batch_size: int = 32
    device: str | None = None
    threads: int | None = None
    extra: dict = field(default_factory=dict)


# --- reading the corpus ---------------------------------------------------------------------------------------------


# --- the model, in the driver or in a worker ------------------------------------------------------------------------

def load_annotator(settings: AnnotateSettings):
    """(ClinLinkerModel without a store, LabelConfig, raw dense encoder or None) for the settings."""
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.search.index import build_index
    from clinlinker.linking.linker import Linker
    from clinlinker.kb.routing import routing_from_setting

    from backend.serving.loading import DEMO_GAZETTEER, DEMO_HIERARCHY
    from backend.serving.config import BackendConfig
    from backend.labelstudio.label_config import parse_label_config
    from backend.serving.model import ClinLinkerModel

    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    config = BackendConfig(index_dir=settings.index, model=settings.model, top_k=settings.top_k,
                           labels=tuple(settings.labels), routing=settings.routing, reranker=settings.reranker,
                           worker=False, **settings.extra)
    routing = routing_from_setting(settings.routing)
    if settings.index is None:
        linker = Linker(build_index(load_knowledge_base([DEMO_GAZETTEER], DEMO_HIERARCHY)), top_k=settings.top_k,
                        routing=routing, abbreviations=settings.abbreviations is not False)
    else:
        from clinlinker.encode.cache import make_cache

        kwargs = {"runtime": settings.runtime} if settings.runtime else {}
        linker = Linker.from_directory(settings.index, model=settings.model, top_k=settings.top_k, routing=routing,
                                       reranker=settings.reranker or ..., batch_size=settings.batch_size,
                                       device=settings.device, cache=make_cache(settings.redis_url) if
                                       settings.redis_url else None,
                                       rerank_cache=make_cache(settings.redis_url, prefix="clinlinker:rr:"),
                                       abbreviations=settings.abbreviations, **kwargs)
    model = ClinLinkerModel(linker, config)
    return model, parse_label_config(settings.label_config, tuple(settings.labels)), _dense(linker.index)


def _dense(index):
    """The dense half of an index (dense or hybrid), or None for the lexical engine."""
    if getattr(index, "engine", None) == "hybrid":
        return index.dense
    return index if getattr(index, "engine", None) == "dense" else None


class PrecomputedEncoder:
    """Answers encode() from the vectors the encode step saved; a text it has not seen goes to the real encoder."""

    def __init__(self, encoder, lookup: dict, chunks: list):
        self.encoder, self.lookup, self.chunks = encoder, lookup, chunks
        self.misses = 0

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode(self, texts, **kwargs):
        texts = list(texts)
        out = np.empty((len(texts), self.encoder.dim), dtype=np.float32)
        missing = []
        for i, text in enumerate(texts):
            where = self.lookup.get(text)
            if where is None:
                missing.append(i)
            else:
                out[i] = self.chunks[where[0]][where[1]]
        if missing:
            self.misses += len(missing)
            out[missing] = self.encoder.encode([texts[i] for i in missing], **kwargs)
        return out


# --- the work directory ---------------------------------------------------------------------------------------------

class Work:
    def __init__(self, root):
        self.root = Path(root)

    def shard(self, i: int) -> Path:
        return self.root / "tasks" / f"shard-{i:05d}.jsonl"

    def chunk(self, i: int) -> Path:
        return self.root / "mentions" / f"chunk-{i:05d}.jsonl"

    def vectors(self, i: int) -> Path:
        return self.root / "vectors" / f"chunk-{i:05d}.npy"

    def output(self, i: int, kind: str) -> Path:
        return self.root / "out" / f"shard-{i:05d}.{kind}"

    def done(self, i: int) -> Path:
        return self.root / "out" / f"shard-{i:05d}.done"

    def finished(self, i: int) -> bool:
        """Shard i's outputs are in place: its marker holds the model version that answered it (written atomically
        last; an empty marker, left by a run killed while writing it, does not count)."""
        try:
            return self.done(i).stat().st_size > 0
        except OSError:
            return False

    def plan(self) -> dict | None:
        try:
            return json.loads((self.root / PLAN).read_text())
        except (OSError, ValueError):
            return None


def input_identity(paths: list[str], texts: str | None) -> list:
    out = []
    for path in paths:
        stat = os.stat(path)
        out.append([str(Path(path).resolve()), stat.st_size, int(stat.st_mtime)])
    if texts:
        out.append(["texts", str(Path(texts).resolve())])
    return out


def split(paths: list[str], work: Work, *, texts: str | None, shard_size: int, chunk_size: int,
          spans_of, identity: dict, progress=None) -> dict:
    """Step 1: shards of checked tasks and chunks of distinct mention strings; returns the plan (written last)."""
    for sub in ("tasks", "mentions", "vectors", "out"):
        shutil.rmtree(work.root / sub, ignore_errors=True)
        (work.root / sub).mkdir(parents=True, exist_ok=True)
    (work.root / PLAN).unlink(missing_ok=True)
    seen: set[str] = set()
    shard = chunk = None
    n_tasks = n_spans = n_shards = n_chunks = in_chunk = in_shard = 0
    try:
        for where, task in read_corpus(paths, texts, identity["doc_field"], identity["mentions_field"]):
            spans = spans_of(where, task)
            if shard is None or in_shard == shard_size:
                if shard is not None:
                    shard.close()
                shard, in_shard = open(work.shard(n_shards), "w", encoding="utf-8"), 0
                n_shards += 1
            shard.write(json.dumps({"where": where, "n": n_tasks, "task": task}, ensure_ascii=False) + "\n")
            in_shard += 1
            n_tasks += 1
            n_spans += len(spans)
            for text in spans:
                if text in seen:
                    continue
                seen.add(text)
                if chunk is None or in_chunk == chunk_size:
                    if chunk is not None:
                        chunk.close()
                    chunk, in_chunk = open(work.chunk(n_chunks), "w", encoding="utf-8"), 0
                    n_chunks += 1
                chunk.write(json.dumps(text, ensure_ascii=False) + "\n")
                in_chunk += 1
            if progress is not None:
                progress.update(1)
    finally:
        for handle in (shard, chunk):
            if handle is not None:
                handle.close()
    plan = {"format": FORMAT, **identity, "tasks": n_tasks, "spans": n_spans, "distinct_mentions": len(seen),
            "shards": n_shards, "chunks": n_chunks, "shard_size": shard_size, "chunk_size": chunk_size,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_atomic(work.root / PLAN, json.dumps(plan, indent=1, ensure_ascii=False))
    return plan


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_lines(path: Path) -> list:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class Worker:
    """Loads the model once; runs encode and link items of one work directory. Local, or as a Ray actor."""

    def __init__(self, settings: dict, work_dir: str, plan: dict):
        self.settings = AnnotateSettings(**settings)
        self.work = Work(work_dir)
        self.plan = plan
        self.model, self.cfg, self.dense = load_annotator(self.settings)
        self.encoder = self.dense.encoder if self.dense is not None else None
        self._vectors = None

    @property
    def model_version(self) -> str:
        return self.model.model_version

    def encode(self, i: int) -> int:
        """Step 2 for chunk i: its distinct mentions' vectors (through the cache the encoder was given)."""
        target = self.work.vectors(i)
        if target.exists():
            return 0
        texts = _read_lines(self.work.chunk(i))
        vectors = self.encoder.encode(texts) if texts else np.zeros((0, self.encoder.dim), np.float32)
        tmp = target.with_name(f"{target.stem}.tmp{os.getpid()}.npy")
        np.save(tmp, vectors.astype(np.float32, copy=False))
        os.replace(tmp, target)
        return len(texts)

    def _use_vectors(self, wait: float = 0.0) -> None:
        """The encoded chunks, as the dense index's encoder. On Ray, encode and link items share one pool of actors
        and the encode items are handed out first: a chunk still missing here is being encoded by another actor;
        after `wait` seconds this actor encodes it itself (the same file, written atomically: no deadlock, at worst
        some work twice)."""
        if self.dense is None or self._vectors is not None:
            return
        deadline = time.monotonic() + wait
        missing = [i for i in range(self.plan["chunks"]) if not self.work.vectors(i).exists()]
        while missing and time.monotonic() < deadline:
            time.sleep(0.2)
            missing = [i for i in missing if not self.work.vectors(i).exists()]
        for i in missing:
            self.encode(i)
        lookup, chunks = {}, []
        for i in range(self.plan["chunks"]):
            for row, text in enumerate(_read_lines(self.work.chunk(i))):
                lookup[text] = (i, row)
            chunks.append(np.load(self.work.vectors(i), mmap_mode="r"))
        self._vectors = PrecomputedEncoder(self.encoder, lookup, chunks)
        self.dense.encoder = self._vectors

    def link(self, i: int, wait: float = 0.0) -> int:
        """Step 3 for shard i: predictions, top-1 links and top-k lists, renamed into place when complete."""
        if self.work.finished(i):
            return 0
        self._use_vectors(wait)
        rows = _read_lines(self.work.shard(i))
        tasks = [row["task"] for row in rows]
        try:  # the whole shard in one call (step 1 checked every task already)
            answered = self.model.predict_offline(tasks, self.cfg)
        except ValueError as exc:  # name the task's place in the corpus
            where = next((row["where"] for row, task in zip(rows, tasks) if not _answers(self.model, task, self.cfg)),
                         f"shard {i}")
            raise ClinlinkerError(f"{where}: {exc}") from None
        outputs = {kind: self.work.output(i, kind) for kind in ("tasks.jsonl", "links.tsv", "candidates.jsonl")}
        tmp = {kind: path.with_name(path.name + f".tmp{os.getpid()}") for kind, path in outputs.items()}
        with open(tmp["tasks.jsonl"], "w", encoding="utf-8") as t, \
                open(tmp["links.tsv"], "w", encoding="utf-8", newline="") as l, \
                open(tmp["candidates.jsonl"], "w", encoding="utf-8") as c:
            for row, task, (prediction, nodes) in zip(rows, tasks, answered):
                t.write(json.dumps({**task, "predictions": [prediction]}, ensure_ascii=False) + "\n")
                name = _filename(task, row["n"], self.model.config.doc_field)
                for mark, node in enumerate(nodes, start=1):
                    top = node["candidates"][0] if node["candidates"] else None
                    span = " ".join(task["data"][self.cfg.text_field][node["start"]:node["end"]].split())
                    l.write("\t".join([name, f"T{mark}", node["label"], str(node["start"]), str(node["end"]),
                                       span, top["code"] if top else "NO_CODE", "EXACT" if top else ""]) + "\n")
                    c.write(json.dumps({"task": task.get("id", row["n"]), "filename": name, "label": node["label"],
                                        "start": node["start"], "end": node["end"], "span": span,
                                        "model_version": prediction["model_version"],
                                        "candidates": node["candidates"]}, ensure_ascii=False) + "\n")
        for kind, path in outputs.items():
            os.replace(tmp[kind], path)
        _write_atomic(self.work.done(i), self.model_version)
        return len(tasks)

    def run(self, kind: str, i: int, wait: float = 0.0) -> int:
        return self.encode(i) if kind == "encode" else self.link(i, wait)


def _answers(model, task, cfg) -> bool:
    try:
        model.predict_offline([task], cfg)
        return True
    except ValueError:
        return False


def _filename(task: dict, n: int, doc_field: str) -> str:
    value = (task.get("data") or {}).get(doc_field)
    if value not in (None, ""):
        return str(value)
    return f"task-{task['id']}" if task.get("id") is not None else f"task-{n}"


class _RayWorker:
    """Ray Data's callable class: one per actor, the model loaded once (in __init__)."""

    def __init__(self, settings: dict, work_dir: str, plan: dict):
        self.worker = Worker(settings, work_dir, plan)

    def __call__(self, batch: dict) -> dict:
        done = []
        for kind, i in zip(batch["kind"], batch["item"]):
            started = time.perf_counter()
            count = self.worker.run(str(kind), int(i), wait=120.0)
            done.append((count, time.perf_counter() - started))
        import ray

        node = ray.get_runtime_context().get_node_id()
        return {"kind": batch["kind"], "item": batch["item"], "count": np.array([d[0] for d in done]),
                "seconds": np.array([d[1] for d in done]), "node": np.array([node] * len(done)),
                "pid": np.array([os.getpid()] * len(done))}


# --- the run --------------------------------------------------------------------------------------------------------

def annotate(paths: list[str], out_dir, settings: AnnotateSettings, *, work_dir=None, texts: str | None = None,
             shard_size: int = 200, chunk_size: int = 20000, restart: bool = False, ray_address: str | None = None,
             use_ray: bool = False, workers: int | None = None, gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0,
             show_progress: bool = True) -> dict:
    """Pre-annotate the corpus; returns a summary (counts, model_version, where the outputs are, seconds)."""
    from backend.serving.model import ClinLinkerModel  # noqa: F401 - fail early if the backend cannot load

    started = time.perf_counter()
    out = Path(out_dir)
    work = Work(work_dir or out / "work")
    work.root.mkdir(parents=True, exist_ok=True)
    if not paths:
        raise ClinlinkerError("no input: give Label Studio tasks (.json/.jsonl) or a spans TSV with --texts")
    use_ray = use_ray or bool(ray_address) or bool(os.environ.get("RAY_ADDRESS"))
    local = None if use_ray else Worker(asdict(settings), str(work.root), {"chunks": 0})
    model_version = local.model_version if local else None
    identity = {"inputs": input_identity(paths, texts), "label_config": hashlib.sha256(
        (settings.label_config or "").encode()).hexdigest()[:16], "top_k": settings.top_k,
        "labels": list(settings.labels), "doc_field": "doc_id", "mentions_field": "mentions",
        "index": str(Path(settings.index).resolve()) if settings.index else None}
    if local:
        identity["doc_field"] = local.model.config.doc_field
        identity["mentions_field"] = local.model.config.mentions_field
    plan = work.plan()
    if plan is not None and not restart:
        mismatch = [key for key in identity if plan.get(key) != identity[key]]
        if plan.get("shard_size") != shard_size:
            mismatch.append("shard_size")
        if mismatch:
            raise ClinlinkerError(f"{work.root} holds a run of other inputs or settings ({', '.join(mismatch)} "
                                  "differ): give another --work directory, or --restart to start it over")
        log.warning("resuming the run in %s: %d of %d shards already done", work.root,
                    sum(work.finished(i) for i in range(plan["shards"])), plan["shards"])
    else:
        from backend.serving.model import PayloadError

        reader = local.model if local else _span_reader(settings)
        cfg = local.cfg if local else _label_config(settings)

        def spans_of(where, task):
            try:
                spans = reader._spans(0, task, None, cfg)
            except (PayloadError, ValueError) as exc:
                raise ClinlinkerError(f"{where}: {str(exc).replace('tasks[0].', '', 1)}") from None
            return [" ".join(span.text.split()) for span in spans]

        bar = _bar(show_progress, "reading", "task")
        plan = split(paths, work, texts=texts, shard_size=shard_size, chunk_size=chunk_size, spans_of=spans_of,
                     identity=identity, progress=bar)
        if bar is not None:
            bar.close()
    dense_needed, ray_used = None, None
    if local is not None:
        local.plan = plan
        dense_needed = local.dense is not None
    items_encode = [("encode", i) for i in range(plan["chunks"]) if not work.vectors(i).exists()]
    items_link = [("link", i) for i in range(plan["shards"]) if not work.finished(i)]
    if local is not None:
        if dense_needed:
            _run_local(local, items_encode, plan, "encoding", show_progress)
        _run_local(local, items_link, plan, "linking", show_progress)
    else:
        ray_used = _run_ray(settings, work, plan, items_encode, items_link, ray_address, workers,
                            gpus_per_worker, cpus_per_worker, show_progress)
    versions = {work.done(i).read_text() for i in range(plan["shards"])}
    if len(versions) > 1:
        raise ClinlinkerError(f"{work.root}: its shards were answered by different model versions "
                              f"({', '.join(sorted(versions))}); --restart to answer them all with one")
    model_version = next(iter(versions), model_version)
    assemble(work, plan, out)
    summary = {"tasks": plan["tasks"], "spans": plan["spans"], "distinct_mentions": plan["distinct_mentions"],
               "shards": plan["shards"], "model_version": model_version, "out": str(out),
               "seconds": round(time.perf_counter() - started, 2), "ray": use_ray, "ray_used": ray_used}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _span_reader(settings: AnnotateSettings):
    """The backend's span reading without a model (the driver of a Ray run loads none)."""
    from backend.serving.config import BackendConfig
    from backend.serving.model import ClinLinkerModel

    class Reader:
        _spans = ClinLinkerModel._spans
        _task_spans = ClinLinkerModel._task_spans
        _check = ClinLinkerModel._check
        _from_data = ClinLinkerModel._from_data
        _from_regions = ClinLinkerModel._from_regions

    reader = Reader()
    reader.config = BackendConfig(index_dir=settings.index, labels=tuple(settings.labels), worker=False,
                                  **settings.extra)
    return reader


def _label_config(settings: AnnotateSettings):
    from backend.labelstudio.label_config import parse_label_config

    return parse_label_config(settings.label_config, tuple(settings.labels))


def _bar(show: bool, desc: str, unit: str, total: int | None = None):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


def _run_local(worker: Worker, items, plan, desc: str, show_progress: bool) -> None:
    bar = _bar(show_progress, desc, "shard" if desc == "linking" else "chunk", len(items))
    for kind, i in items:
        worker.run(kind, i)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()


def _run_ray(settings, work: Work, plan, items_encode, items_link, address, workers, gpus, cpus,
             show_progress) -> dict:
    """Steps 2 and 3 on Ray Data: one dataset of work items, the chunks to encode first, then the shards, mapped by
    one pool of `workers` actors (each loads the model once for both steps)."""
    from clinlinker.encode.ray import init_ray

    ray = init_ray(address)
    # a plain settings dict: the actors rebuild AnnotateSettings (no clinlinker object crosses the wire)
    args = {"settings": asdict(settings), "work_dir": str(work.root.resolve()), "plan": plan}
    dense = settings.index is not None and _index_engine(settings.index) != "lexical"
    used = {"nodes": set(), "actors": {}}
    items = (items_encode if dense else []) + items_link
    if items:
        from clinlinker.encode.ray import pool_size

        workers = pool_size(workers, ray.cluster_resources(), cpus, gpus, len(items))
        used["workers"] = workers
        data = ray.data.from_items([{"kind": k, "item": i} for k, i in items], override_num_blocks=len(items))
        mapped = data.map_batches(_RayWorker, fn_constructor_kwargs=args, batch_size=1,
                                  compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus,
                                  num_gpus=gpus or None, batch_format="numpy")
        bar = _bar(show_progress, f"annotating (ray, {workers} workers)", "item", len(items))
        for row in mapped.iter_rows():
            used["nodes"].add(str(row["node"]))
            used["actors"].setdefault(str(row["kind"]), set()).add((str(row["node"]), int(row["pid"])))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    every = set().union(*used["actors"].values()) if used["actors"] else set()
    return {"nodes": len(used["nodes"]), "actors": len(every), "workers": used.get("workers", 0),
            "per_step": {step: len(a) for step, a in used["actors"].items()}}


def _index_engine(index_dir: str) -> str | None:
    from clinlinker.search.index import read_manifest

    return read_manifest(index_dir).get("engine")


def assemble(work: Work, plan: dict, out: Path) -> None:
    """Step 4: the shards' outputs, in corpus order, into the three output files (written whole, then renamed)."""
    from clinlinker.links import LINK_COLUMNS

    out.mkdir(parents=True, exist_ok=True)
    targets = {"tasks.json": out / "tasks.json", "links.tsv": out / "links.tsv",
               "candidates.jsonl": out / "candidates.jsonl"}
    tmp = {name: path.with_name(path.name + ".tmp") for name, path in targets.items()}
    with open(tmp["tasks.json"], "w", encoding="utf-8") as tasks, \
            open(tmp["links.tsv"], "w", encoding="utf-8", newline="") as links, \
            open(tmp["candidates.jsonl"], "w", encoding="utf-8") as cands:
        tasks.write("[")
        links.write("\t".join(LINK_COLUMNS) + "\n")
        first = True
        for i in range(plan["shards"]):
            with open(work.output(i, "tasks.jsonl"), encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        tasks.write(("\n" if first else ",\n") + line.rstrip("\n"))
                        first = False
            for kind, handle_out in (("links.tsv", links), ("candidates.jsonl", cands)):
                with open(work.output(i, kind), encoding="utf-8") as handle:
                    shutil.copyfileobj(handle, handle_out)
        tasks.write("\n]\n")
    for name, path in targets.items():
        os.replace(tmp[name], path)
