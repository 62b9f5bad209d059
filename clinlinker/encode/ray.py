"""Encoding a large gazetteer on a Ray cluster (`clinlinker index --ray`).

`RayEncoder` wraps the dense encoder the index is built with: the same name, fingerprint, pooling, precision and
dimension (so the index directory and its manifest are the ones a local build writes), but `encode()` cuts the texts
into shards that Ray Data maps over a pool of actors, each loading the model once (CPU or GPU actors) and checking
that it has the same fingerprint. The shards' vectors come back in order; they equal the local build's within float
tolerance (batches are composed per shard).
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from clinlinker.errors import ClinlinkerError

log = logging.getLogger(__name__)


def init_ray(address: str | None = None):
    try:
        import ray
    except ImportError:
        raise ClinlinkerError("--ray needs the ray package (pip install -r requirements.txt installs it)") from None
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.verbose_stats_logs = False
    return ray


def pool_size(workers: int | None, resources: dict, cpus_per_worker: float, gpus_per_worker: float,
              items: int) -> int:
    """How many actors: `workers` when given, else as many as the cluster's GPUs (GPU actors) or CPUs hold; never
    more than there are work items, never fewer than one. One-CPU actors filling a 2-core machine were the faster
    setting in the current code's runs on both CPUs measured (docs/benchmarks.md)."""
    if workers is None:
        if gpus_per_worker:
            workers = int(resources.get("GPU", 0) // gpus_per_worker)
        else:
            workers = int(resources.get("CPU", 1) // max(cpus_per_worker, 1e-9))
    return max(1, min(workers, items))


class _EncodeActor:
    def __init__(self, spec: dict):
        from clinlinker.encode.encoders import DenseEncoder

        expected = spec.pop("fingerprint")
        self.encoder = DenseEncoder(**spec)
        if self.encoder.fingerprint != expected:
            raise ClinlinkerError(f"the model {spec['model']!r} on this Ray node is not the driver's (fingerprint "
                                  f"{self.encoder.fingerprint[:12]}, expected {expected[:12]}): every node needs the "
                                  "same model files")

    def __call__(self, batch: dict) -> dict:
        vectors = [self.encoder.encode(json.loads(str(texts))) for texts in batch["texts"]]
        return {"i": batch["i"], "vectors": np.array([v.tobytes() for v in vectors], dtype=object),
                "rows": np.array([len(v) for v in vectors]), "pid": np.array([os.getpid()] * len(vectors))}


class RayEncoder:
    """A DenseEncoder whose encode() runs on a Ray cluster in shards of `shard_size` texts."""

    def __init__(self, encoder, *, address: str | None = None, workers: int | None = None, cpus_per_worker: float = 1.0,
                 gpus_per_worker: float = 0.0, shard_size: int = 8192):
        self.encoder = encoder
        self.address, self.workers, self.shard_size = address, workers, shard_size
        self.cpus, self.gpus = cpus_per_worker, gpus_per_worker
        self.encoded_on = None  # after a sharded encode: {"ray": {"shards", "actors"}}, recorded in the manifest

    def __getattr__(self, name):  # name, fingerprint, dim, pooling, precision, describe ... of the local encoder
        return getattr(self.encoder, name)

    def encode(self, texts, **kwargs) -> np.ndarray:
        texts = list(texts)
        if len(texts) <= self.shard_size:
            return self.encoder.encode(texts, **kwargs)
        ray = init_ray(self.address)
        e = self.encoder
        spec = {"model": e.name, "pooling": e.pooling, "prefix": getattr(e, "prefix", ""), "max_length": e.max_length,
                "batch_size": e.batch_size,
                "precision": e.precision, "runtime": getattr(e, "runtime", "torch"), "fingerprint": e.fingerprint,
                "device": "cuda" if self.gpus else None, "show_progress": False}
        shards = [{"i": i, "texts": json.dumps(texts[start:start + self.shard_size], ensure_ascii=False)}
                  for i, start in enumerate(range(0, len(texts), self.shard_size))]
        workers = pool_size(self.workers, ray.cluster_resources(), self.cpus, self.gpus, len(shards))
        data = ray.data.from_items(shards, override_num_blocks=len(shards))
        mapped = data.map_batches(_EncodeActor, fn_constructor_kwargs={"spec": spec}, batch_size=1,
                                  compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=self.cpus,
                                  num_gpus=self.gpus or None, batch_format="numpy")
        out = np.empty((len(texts), e.dim), dtype=np.float32)
        progress = None
        if kwargs.get("show_progress", True):
            from tqdm.auto import tqdm

            progress = tqdm(total=len(shards), desc=f"encoding on ray ({workers} workers)", unit="shard")
        done, actors = 0, set()
        for row in mapped.iter_rows():
            actors.add(int(row["pid"]))
            i, rows = int(row["i"]), int(row["rows"])
            out[i * self.shard_size:i * self.shard_size + rows] = np.frombuffer(row["vectors"], dtype=np.float32) \
                .reshape(rows, e.dim)
            done += 1
            if progress is not None:
                progress.update(1)
        if progress is not None:
            progress.close()
        if done != len(shards):
            raise ClinlinkerError(f"ray returned {done} of {len(shards)} shards")
        self.encoded_on = {"ray": {"shards": done, "actors": len(actors), "texts": len(texts)}}
        return out
