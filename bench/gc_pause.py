"""How long a full garbage collection stops a backend worker, and what keeping the model out of it saves.

A full collection walks every object the collector tracks; CPython runs one every few hundred requests' worth of
allocations, and the request that triggers it waits. This loads an index as a worker does, adds a project's learned
terms, and times full collections (median of --repeat) as the backend runs them before and after serve_app's
`keep_out_of_collector()`.

    python bench/gc_pause.py --index bench/.cache/quality-models/ix-lexical-h --links 100000
    python bench/gc_pause.py                      # the demo gazetteer
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pause_ms(repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", help="index directory (default: the demo gazetteer, lexical)")
    parser.add_argument("--links", type=int, default=100_000, help="accepted wordings in one project's layer")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)

    from backend.serving.model import keep_out_of_collector
    from clinlinker.linking.learned import LearnedTerms

    if args.index:
        from clinlinker.search.index import load_index

        index = load_index(args.index)
    else:
        from backend.serving.loading import DEMO_GAZETTEER, DEMO_HIERARCHY
        from clinlinker.kb.gazetteer import load_knowledge_base
        from clinlinker.search.index import build_index

        index = build_index(load_knowledge_base([DEMO_GAZETTEER], DEMO_HIERARCHY))
    figures = {"cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                            if line.startswith("model name")), platform.processor()),
               "python": platform.python_version(), "index": args.index or "demo gazetteer", "links": args.links}
    figures["tracked_objects_model"] = len(gc.get_objects())
    figures["full_collection_ms_model"] = pause_ms(args.repeat)
    codes = [c.code for c in index.kb.concepts]
    learned = LearnedTerms(index.kb, index.term_encoder).replace(
        (f"dolor número {i} de la zona {i % 97}", codes[i % len(codes)]) for i in range(args.links))
    figures["tracked_objects_with_links"] = len(gc.get_objects())
    figures["full_collection_ms_with_links"] = pause_ms(args.repeat)
    keep_out_of_collector()
    figures["frozen_objects"] = gc.get_freeze_count()
    figures["full_collection_ms_kept_out"] = pause_ms(args.repeat)
    learned.apply([("otra forma de decirlo", codes[0], 1)])  # the layer keeps learning after the freeze
    figures["full_collection_ms_kept_out_after_a_link"] = pause_ms(args.repeat)
    for key, value in figures.items():
        print(f"{key:45} {value}")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
