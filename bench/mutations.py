"""Which one-line mutations of the product the tests let pass: the next weak test found by a command, not a reviewer.

    python bench/mutations.py                 # every mutation, each against the tests that should catch it
    python bench/mutations.py --full          # each against the whole quick tier (slow: minutes per mutation)
    python bench/mutations.py --only packed-mask-bf16 --only ray-never-used

Each mutation is an exact text replacement in one file of a copy of the tree (the files git tracks, plus this
checkout's uncommitted changes), made where the code is today: one that no longer applies is reported as stale,
never skipped silently. The copy's tests run with the copy first on sys.path (`python -m pytest` in it). A mutation is
caught when the run fails; one that survives is a test to strengthen. Exit status 1 if any survived or went stale.
Results: bench/results/mutations.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]  # what should catch it (the whole quick tier with --full)
    why: str
    marker: str = "not (e2e or faults or slow)"
    every: bool = False  # replace every occurrence (a name in a document), not exactly one


MUTATIONS = [
    Mutation("packed-mask-bf16", "clinlinker/encode/packed.py",
             "torch.full((), torch.finfo(dtype).min, dtype=dtype)",
             "torch.full((), torch.finfo(dtype).min if dtype == torch.float32 else 0.0, dtype=dtype)",
             ("tests/clinlinker/encode/test_encoders.py",), "texts of a bf16 pack see each other"),
    Mutation("packed-positions-not-reset", "clinlinker/encode/packed.py",
             "positions[r, :total] = np.arange(total) - np.repeat(starts, n) + offset",
             "positions[r, :total] = np.arange(total) + offset",
             ("tests/clinlinker/encode/test_encoders.py",), "a packed text's positions continue its neighbour's"),
    Mutation("mean-pool-over-the-row", "clinlinker/encode/packed.py",
             "pool[first + segment, r, np.arange(total)] = (1.0 / n)[segment]",
             "pool[first + segment, r, np.arange(total)] = 1.0 / total",
             ("tests/clinlinker/encode/test_encoders.py",), "mean pooling divided by the row's length"),
    Mutation("precision-measured-as-fp32", "clinlinker/evaluate/precision.py",
             "batch_size=batch_size, device=device, precision=precision)",
             "batch_size=batch_size, device=device, precision=\"fp32\")",
             ("tests/clinlinker/evaluate/test_precision.py",), "every precision is measured in fp32"),
    Mutation("precision-fast-flags", "clinlinker/evaluate/precision.py",
             'FAST_FLAGS = ("avx512_bf16", "amx_bf16")', 'FAST_FLAGS = ("avx512f", "amx_bf16")',
             ("tests/clinlinker/evaluate/test_precision.py",), "bf16 said fast on CPUs without BF16 instructions"),
    Mutation("swap-candidates-of-current-model", "backend/serving/model.py",
             "candidates = serving.linker.link(mentions, self.config.top_k",
             "candidates = self.serving.linker.link(mentions, self.config.top_k",
             ("tests/backend/test_learning.py",), "a response mixes one model's version with another's candidates"),
    Mutation("doctor-redis-warns", "backend/jobs/doctor.py",
             'report.ok("redis", f"{_redact(url)}: Redis {version}, ping {latency:.1f} ms")',
             'report.warn("redis", f"{_redact(url)}: Redis {version}, ping {latency:.1f} ms")',
             ("tests/backend/test_doctor.py",), "a reachable Redis reported as a warning"),
    Mutation("hub-retried", "clinlinker/encode/encoders.py",
             "unreachable = not _looks_local(name) and not _offline() and not _hub_reachable()",
             "unreachable = False",
             ("tests/clinlinker/encode/test_encoders.py::test_without_network_a_hub_id_fails_at_once_with_what_to_do",),
             "a hub id on a machine without the hub is retried for about a minute"),
    Mutation("ray-never-used", "clinlinker/encode/ray.py",
             "if len(texts) <= self.shard_size:", "if True:",
             ("tests/clinlinker/encode/test_ray.py",), "--ray encodes locally", marker="slow"),
    Mutation("reference-variable-dropped", "docs/reference.md", "`CLINLINKER_ROUTING`", "`CLINLINKER_ROUTE`",
             ("tests/test_packaging.py", "tests/test_docs.py"), "a setting the code reads is not in the reference"),
    Mutation("setting-undocumented", "backend/serving/config.py",
             "# CLINLINKER_TOP_K: candidates per mention", "# candidates per mention",
             ("tests/test_docs.py",), "a setting's variable is no longer said where the reference is drawn from"),
    Mutation("rerank-pair-reversed", "clinlinker/rerank/cross_encoder.py",
             "batch = self.tokenizer([pairs[i][0] for i in chunk], [pairs[i][1] for i in chunk]",
             "batch = self.tokenizer([pairs[i][1] for i in chunk], [pairs[i][0] for i in chunk]",
             ("tests/clinlinker/rerank/test_cross_encoder.py",), "the re-ranker reads (term, mention)"),
    Mutation("rerank-logit-unsquashed", "clinlinker/rerank/cross_encoder.py",
             "out[chunk] = torch.sigmoid(logit).cpu().numpy()", "out[chunk] = logit.cpu().numpy()",
             ("tests/clinlinker/rerank/test_cross_encoder.py",), "re-ranker scores are raw logits"),
    Mutation("deletion-by-task", "backend/records/store.py",
             "conn.execute(deleted_t.insert().values(project=project, annotation=annotation, deleted=now))",
             "pass",
             ("tests/backend/test_store.py",), "a deletion leaves no tombstone of the annotation's id"),
    Mutation("prefix-not-applied", "clinlinker/encode/encoders.py",
             "texts = [self.prefix + text for text in texts] if self.prefix else list(texts)",
             "texts = list(texts)",
             ("tests/clinlinker/encode/test_unpack.py",), "a model's recorded prefix is not put before the texts"),
    # search: the fusion, the concept ranking, the label's part, normalised vectors
    Mutation("hybrid-weight-swapped", "clinlinker/search/hybrid.py",
             "return w * sd + (1 - w) * sl", "return (1 - w) * sd + w * sl",
             ("tests/clinlinker/search/test_hybrid.py",), "the interpolation gives the dense weight to the lexical side"),
    Mutation("hybrid-floor-zero", "clinlinker/search/hybrid.py",
             "floor_d = _last_score(dense)", "floor_d = 0.0",
             ("tests/clinlinker/search/test_hybrid.py",), "a concept the dense part did not list scores 0 there"),
    Mutation("rrf-weight-swapped", "clinlinker/search/hybrid.py",
             "return w / (RRF_K + rd) + (1 - w) / (RRF_K + rl)", "return (1 - w) / (RRF_K + rd) + w / (RRF_K + rl)",
             ("tests/clinlinker/search/test_hybrid.py",), "reciprocal rank fusion weighs the parts the wrong way"),
    Mutation("learned-terms-off-scale", "clinlinker/search/hybrid.py",
             "(h.lexical.encoder, 1.0 - h.weight)", "(h.lexical.encoder, h.weight)",
             ("tests/clinlinker/search/test_hybrid.py", "tests/clinlinker/linking/test_learned.py"),
             "learned wordings scored at another weight than the hybrid's own terms"),
    Mutation("concept-by-worst-term", "clinlinker/search/candidates.py",
             "order = np.lexsort((term_ids, ~is_pref, -scores, concepts))",
             "order = np.lexsort((term_ids, ~is_pref, scores, concepts))",
             ("tests/clinlinker/search/test_index.py",), "a concept scores its worst term"),
    Mutation("dense-label-part-ignored", "clinlinker/search/index.py",
             "cids, tids, sc = self._rank(row_ids, exact.astype(np.float32), k, allowed)",
             "cids, tids, sc = self._rank(row_ids, exact.astype(np.float32), k, None)",
             ("tests/clinlinker/search/test_index.py", "tests/clinlinker/kb/test_routing.py"),
             "the dense engine answers outside the label's part"),
    Mutation("vectors-not-normalised", "clinlinker/encode/encoders.py",
             "return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)", "return pooled",
             ("tests/clinlinker/encode/test_encoders.py", "tests/clinlinker/encode/test_onnx_runtime.py"),
             "packed and ONNX vectors are not unit length: scores are no cosines"),
    # re-ranking: its blend with the first stage, what coders accepted
    Mutation("rerank-share-swapped", "clinlinker/rerank/cross_encoder.py",
             "scores[j] = share * p + (1.0 - share) * max(0.0, min(1.0, cands[j].score))",
             "scores[j] = (1.0 - share) * p + share * max(0.0, min(1.0, cands[j].score))",
             ("tests/clinlinker/rerank/test_cross_encoder.py",), "the first stage gets the cross-encoder's share"),
    Mutation("rerank-accepted-not-first", "clinlinker/rerank/cross_encoder.py",
             "head = [c for c in cands[:depth] if _accepted(c)]", "head = []",
             ("tests/clinlinker/rerank/test_cross_encoder.py",), "an accepted wording is re-ranked like any other"),
    # packing and pooling
    Mutation("cls-picks-last-token", "clinlinker/encode/packed.py",
             "pool[first + np.arange(len(row)), r, starts] = 1.0",
             "pool[first + np.arange(len(row)), r, starts + n - 1] = 1.0",
             ("tests/clinlinker/encode/test_encoders.py",), "CLS pooling of a packed text takes its last token"),
    Mutation("mean-pool-over-padding", "clinlinker/encode/packed.py",
             "return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)", "return hidden.mean(dim=1)",
             ("tests/clinlinker/encode/test_encoders.py", "tests/clinlinker/train/test_fine_tune.py"),
             "mean pooling of a padded batch averages the padding too"),
    # the memo of the index's answers
    Mutation("memo-part-ignored", "clinlinker/search/memo.py",
             "keys = [(text, part, depth) for text in texts]", "keys = [(text, None, depth) for text in texts]",
             ("tests/clinlinker/search/test_memo.py",), "a wording's list from one label's part served for another's"),
    Mutation("memo-tracked", "clinlinker/search/memo.py",
             "self._lists[key] = marshal.dumps(tuple(tuple(getattr(c, name) for name in FIELDS) for c in lists))",
             "self._lists[key] = tuple(tuple(getattr(c, name) for name in FIELDS) for c in lists)",
             ("tests/clinlinker/search/test_memo.py",), "the kept lists are objects every full collection walks"),
]


def tree_copy(destination: Path) -> None:
    """The files git tracks, as they are in this checkout (uncommitted changes included), and untracked ones."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run(mutation: Mutation, base: Path, full: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"mutant-{mutation.name}-"))
    try:
        shutil.copytree(base, work, dirs_exist_ok=True)
        path = work / mutation.path
        text = path.read_text(encoding="utf-8")
        if text.count(mutation.old) != 1 and not (mutation.every and mutation.old in text):
            return {"name": mutation.name, "outcome": "stale",
                    "detail": f"{mutation.path}: the text to mutate occurs {text.count(mutation.old)} times"}
        path.write_text(text.replace(mutation.old, mutation.new), encoding="utf-8")
        tests = [] if full else list(mutation.tests)
        marker = "not (e2e or faults or slow)" if full else mutation.marker
        started = time.perf_counter()
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m",
                                 marker, *tests], cwd=work, env=env, capture_output=True, text=True)
        seconds = round(time.perf_counter() - started, 1)
        tail = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))][:3]
        outcome = {0: "survived", 1: "caught"}.get(result.returncode, f"error (pytest exit {result.returncode})")
        if result.returncode == 5:
            outcome = "error (no tests ran)"
        return {"name": mutation.name, "outcome": outcome, "seconds": seconds, "why": mutation.why,
                "caught_by": tail, "tests": tests or ["quick tier"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="run the whole quick tier against each mutation")
    parser.add_argument("--only", action="append", metavar="NAME", help="run these mutations only")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "mutations.json"))
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    base = Path(tempfile.mkdtemp(prefix="mutants-base-"))
    try:
        tree_copy(base)
        results = []
        for mutation in chosen:
            results.append(run(mutation, base, args.full))
            print(f"{results[-1]['outcome']:<10} {mutation.name:<36} {results[-1].get('seconds', '')} s  "
                  f"{mutation.why}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    survived = [r["name"] for r in results if r["outcome"] != "caught"]
    print(f"\n{len(results) - len(survived)} of {len(results)} mutations caught"
          + (f"; not caught: {', '.join(survived)}" if survived else ""))
    if not args.only:
        Path(args.out).write_text(json.dumps({"full": args.full, "results": results}, indent=2) + "\n",
                                  encoding="utf-8")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
