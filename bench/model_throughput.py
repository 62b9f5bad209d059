"""Encoding throughput of model directories side by side on this machine: texts per second for real gazetteer terms,
PyTorch and ONNX Runtime (packed texts on a CPU, as the backend encodes), each model run in turn, three rounds,
medians; results in bench/results/model-throughput.json.

    python bench/model_throughput.py MODEL_DIR [MODEL_DIR ...] [--terms 2000]
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import time

from common import DATA, machine, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--terms", type=int, default=2000)
    parser.add_argument("--runtimes", default="torch,onnx")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from clinlinker.encode.encoders import DenseEncoder

    with open(DATA / "gazetteers" / "medprocner_procedures_es.tsv", encoding="utf-8") as handle:
        terms = sorted({row[2] for i, row in enumerate(csv.reader(handle, delimiter="\t")) if i and len(row) > 2})
    terms = random.Random(1).sample(terms, args.terms)
    encoders = {(model, runtime): DenseEncoder(model, runtime=runtime, batch_size=32)
                for model in args.models for runtime in args.runtimes.split(",")}
    timings = {key: [] for key in encoders}
    for _ in range(args.rounds):
        for key, encoder in encoders.items():
            started = time.perf_counter()
            encoder.encode(terms, show_progress=False)
            timings[key].append(len(terms) / (time.perf_counter() - started))
    result = {"machine": machine(), "terms": len(terms), "texts_per_s": {
        f"{model} [{runtime}]": round(statistics.median(values), 1) for (model, runtime), values in timings.items()}}
    for name, value in result["texts_per_s"].items():
        print(f"{value:8.1f} texts/s  {name}")
    save("model-throughput.json", result)


if __name__ == "__main__":
    main()
