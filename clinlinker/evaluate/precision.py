"""The fastest precision the hardware has, judged by accuracy.

`detect()` says what the CPU and the GPU can run fast: bf16 where the CPU has AVX-512 BF16 or AMX (bf16 encoding
measured 6.2x fp32 on such an AMD EPYC, 0.36x on an AVX2-only one: docs/benchmarks.md) or the GPU supports bf16.

Speed alone does not choose it: `check()` (`clinlinker precision`) encodes the knowledge base and gold mentions at
fp32 and at each fast precision and keeps a precision only when top-1 and top-25 accuracy stay within 0.2 points of
fp32 on every gold file (what coders see; list overlap alone is not the test). The verdict is kept for the model
(by its fp32 fingerprint, with the hardware it was measured on): beside a local model directory as
clinlinker_precision.json, else in ~/.cache/clinlinker/precision/. `choose()` then gives, for `--precision auto`
(the default of `clinlinker index`), the fastest precision that is fast on this hardware and passed for this model,
else fp32; the index manifest records the choice and why, and /health reports the detection.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

log = logging.getLogger(__name__)

VERDICT = "clinlinker_precision.json"
TOLERANCE = 0.002  # 0.2 points of top-1 and top-25 accuracy, on every gold file
FAST_FLAGS = ("avx512_bf16", "amx_bf16")
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def detect() -> dict:
    """CPU model and the flags that matter, the GPU, and which precisions run fast here."""
    import torch

    flags, model = set(), platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    gpu = None
    if torch.cuda.is_available():
        gpu = {"name": torch.cuda.get_device_name(0), "bf16": bool(torch.cuda.is_bf16_supported())}
    fast = fast_precisions(flags, gpu)
    return {"cpu": model, "cpu_flags": [f for f in SHOWN_FLAGS if f in flags],
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "gpu": gpu, "fast_precisions": fast,
            "device": "cuda" if gpu else "cpu"}


def fast_precisions(cpu_flags, gpu: dict | None) -> list[str]:
    """The precisions faster than fp32 on a machine with these CPU flags and this GPU (None: none)."""
    return ["bf16"] if (gpu and gpu["bf16"]) or any(f in cpu_flags for f in FAST_FLAGS) else []


def verdict_path(model: str, fingerprint: str) -> Path:
    local = Path(model)
    if local.is_dir() and os.access(local, os.W_OK):
        return local / VERDICT
    return Path.home() / ".cache" / "clinlinker" / "precision" / f"{fingerprint[:16]}.json"


def read_verdicts(model: str, fingerprint: str) -> dict:
    try:
        data = json.loads(verdict_path(model, fingerprint).read_text())
    except (OSError, ValueError):
        return {}
    return data if data.get("fingerprint") == fingerprint else {}


def choose(model: str, fingerprint: str, hardware: dict | None = None) -> tuple[str, str]:
    """(precision, why) for `--precision auto`: the fastest precision fast on this hardware that passed for this
    model, else fp32."""
    hardware = hardware or detect()
    verdicts = read_verdicts(model, fingerprint).get("precisions", {})
    for precision in hardware["fast_precisions"]:
        verdict = verdicts.get(precision)
        if verdict and verdict.get("passed"):
            return precision, (f"{precision}: fast on this hardware ({', '.join(hardware['cpu_flags']) or 'GPU'}) "
                               f"and within {TOLERANCE * 100:.1f} points of fp32 on {verdict['gold']}")
        if verdict:
            return "fp32", (f"fp32: {precision} is fast here but moved accuracy by more than "
                            f"{TOLERANCE * 100:.1f} points on {verdict['gold']} ({verdict['worst']})")
    if hardware["fast_precisions"]:
        return "fp32", (f"fp32: {', '.join(hardware['fast_precisions'])} would be faster here but was never checked "
                        "for this model (`clinlinker precision --index DIR --gold TSV`)")
    return "fp32", "fp32: this hardware runs no faster precision (no AVX-512 BF16 / AMX, no bf16 GPU)"


def check(index_dir, gold_paths: list[str], *, precisions=("bf16",), batch_size: int = 32,
          device: str | None = None) -> dict:
    """Accuracy at fp32 and at each precision (knowledge base and mentions encoded at that precision), per gold file;
    the verdict is written for the model and returned."""
    from clinlinker.encode.encoders import DenseEncoder
    from clinlinker.errors import ClinlinkerError
    from clinlinker.evaluate.metrics import evaluate_links
    from clinlinker.search.index import DenseIndex, _read_kb, load_index, model_source, read_manifest
    from clinlinker.linking.linker import Linker
    from clinlinker.links import read_links
    from clinlinker.kb.routing import LabelRouting

    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir)
    dense_dir = index_dir / "dense" if manifest.get("engine") == "hybrid" else index_dir
    dense_manifest = read_manifest(dense_dir)
    if dense_manifest.get("engine") != "dense":
        raise ClinlinkerError(f"{index_dir}: a lexical index has no encoder precision to check")
    if (dense_manifest.get("precision") or "fp32") != "fp32":
        raise ClinlinkerError(f"{index_dir} was encoded in {dense_manifest['precision']}: check an fp32 index")
    gold = {path: [link for link in read_links(path) if link.is_clean] for path in gold_paths}
    model = model_source(dense_manifest)
    kb = _read_kb(dense_dir, dense_manifest)
    started = time.perf_counter()

    def accuracy(index) -> dict:
        linker = Linker(index, routing=LabelRouting.default())
        out = {}
        for path, links in gold.items():
            lists = linker.link([link.span for link in links], 25, labels=[link.label for link in links])
            report = evaluate_links(links, [[c.code for c in cands] for cands in lists], known_codes=kb, ks=[1, 25])
            out[path] = {"top1": report["all"]["acc@1"], "top25": report["all"]["acc@25"], "n": len(links)}
        return out

    reference = load_index(dense_dir, batch_size=batch_size, device=device)
    results = {"fp32": accuracy(reference)}
    fingerprint = reference.encoder.fingerprint
    verdicts = {}
    for precision in precisions:
        encoder = DenseEncoder(model, pooling=dense_manifest["pooling"], prefix=dense_manifest.get("prefix", ""),
                               max_length=dense_manifest["max_length"],
                               batch_size=batch_size, device=device, precision=precision)
        results[precision] = accuracy(DenseIndex.build(kb, encoder, dense_manifest.get("index_type", "flat")))
        deltas = {path: {m: round(results[precision][path][m] - results["fp32"][path][m], 4) for m in ("top1", "top25")}
                  for path in gold}
        worst_path, worst = min(((p, min(d.values())) for p, d in deltas.items()), key=lambda x: x[1])
        verdicts[precision] = {"passed": all(abs(v) <= TOLERANCE + 1e-9 for d in deltas.values() for v in d.values()),
                               "deltas": deltas, "gold": ", ".join(Path(p).name for p in gold),
                               "encoder_fingerprint": encoder.fingerprint,  # what was measured: weights + precision
                               "worst": f"{worst * 100:+.1f} points on {Path(worst_path).name}"}
    record = {"fingerprint": fingerprint, "model": model, "hardware": detect(), "tolerance": TOLERANCE,
              "accuracy": results, "precisions": verdicts, "seconds": round(time.perf_counter() - started, 1),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = verdict_path(model, fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = read_verdicts(model, fingerprint)
    merged = {**record, "precisions": {**previous.get("precisions", {}), **verdicts}}
    path.write_text(json.dumps(merged, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    record["written"] = str(path)
    return record
