"""Import of a synthetic RF2 release the size of the Spanish Edition: time and peak memory.

    python bench/rf2_import.py [--concepts 350000 --descriptions 1200000 --isa 1000000] [--out results.json]

Writes a Snapshot release (concepts, Spanish descriptions: an FSN and synonyms per concept, a Spanish language
refset with preferred/acceptable rows for each description, is-a relationships plus as many other relationships,
a few inactive rows) into a temporary folder, then runs `clinlinker kb rf2` on it in a child process and reports
its wall time and peak resident memory (the goal: under 2 minutes and 2 GB on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.rf2_release import ACC, ES, ES_REFSET, FSN, HEADERS, IS_A, PREF, SYN  # noqa: E402

WORDS = ("dolor", "fiebre", "fractura", "tumor", "infección", "abdominal", "torácico", "crónico", "agudo", "renal",
         "hepático", "apendicectomía", "biopsia", "resección", "parcial", "total", "izquierdo", "derecho", "del",
         "síndrome", "lesión", "quiste", "hemorragia", "insuficiencia", "cardíaca", "pulmonar")
TAGS = ("trastorno", "hallazgo", "procedimiento", "estructura corporal", "sustancia")


def write(folder: Path, concepts: int, descriptions: int, isa: int, seed: int = 1) -> dict:
    rng = random.Random(seed)
    term = folder / "Snapshot" / "Terminology"
    refset = folder / "Snapshot" / "Refset" / "Language"
    term.mkdir(parents=True)
    refset.mkdir(parents=True)
    ids = [str(100000000 + i * 10 + 3) for i in range(concepts)]
    with (term / "sct2_Concept_Snapshot_ES_20240331.txt").open("w", encoding="utf-8") as f:
        f.write(HEADERS["concept"] + "\n")
        for i, cid in enumerate(ids):
            f.write(f"{cid}\t20240331\t{0 if i % 97 == 0 else 1}\t{ES}\t900000000000074008\n")
    per_concept = max(2, descriptions // concepts)
    written = 0
    with (term / "sct2_Description_Snapshot-es_ES_20240331.txt").open("w", encoding="utf-8") as f, \
            (refset / "der2_cRefset_LanguageSnapshot-es_ES_20240331.txt").open("w", encoding="utf-8") as r:
        f.write(HEADERS["description"] + "\n")
        r.write(HEADERS["language"] + "\n")
        for i, cid in enumerate(ids):
            count = per_concept + (1 if i < descriptions - per_concept * concepts else 0)
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
            for j in range(count):
                did = f"{200000000 + written}1"
                kind = FSN if j == 0 else SYN
                text = f"{words} ({rng.choice(TAGS)})" if j == 0 else f"{words} {j}"
                f.write(f"{did}\t20240331\t1\t{ES}\t{cid}\tes\t{kind}\t{text}\t900000000000448009\n")
                r.write(f"{written:08x}-0000-4000-8000-000000000000\t20240331\t1\t{ES}\t{ES_REFSET}\t{did}\t"
                        f"{PREF if j <= 1 else ACC}\n")
                written += 1
    with (term / "sct2_Relationship_Snapshot_ES_20240331.txt").open("w", encoding="utf-8") as f:
        f.write(HEADERS["relationship"] + "\n")
        for k in range(isa * 2):  # as many attribute relationships as is-a ones, as in a real release
            child = rng.randrange(1, concepts)
            parent = rng.randrange(0, child)
            kind = IS_A if k % 2 == 0 else "363698007"
            f.write(f"{300000000 + k}2\t20240331\t1\t{ES}\t{ids[child]}\t{ids[parent]}\t0\t{kind}\t"
                    f"900000000000011006\t900000000000451002\n")
    return {"concepts": concepts, "descriptions": written, "language_refset_rows": written, "is_a": isa,
            "other_relationships": isa}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concepts", type=int, default=350_000)
    parser.add_argument("--descriptions", type=int, default=1_200_000)
    parser.add_argument("--isa", type=int, default=1_000_000)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="clinlinker-rf2-"))
    try:
        started = time.perf_counter()
        sizes = write(work / "release", args.concepts, args.descriptions, args.isa)
        written_s = time.perf_counter() - started
        files_mb = sum(p.stat().st_size for p in (work / "release").rglob("*.txt")) / 2 ** 20
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "clinlinker.cli", "--log-level", "WARNING", "kb", "rf2", "--release",
                        str(work / "release"), "--out", str(work / "kb")], check=True, cwd=ROOT)
        import_s = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                    if line.startswith("model name")), platform.processor())
        figures = {"cpu": cpu, "cores": os.cpu_count(), **sizes, "release_mb": round(files_mb),
                   "written_s": round(written_s, 1), "import_s": round(import_s, 1), "peak_rss_mb": round(peak_mb)}
        print(json.dumps(figures, indent=2))
        print(f"\nRF2 import of {sizes['concepts']:,} concepts, {sizes['descriptions']:,} descriptions, "
              f"{sizes['is_a']:,} is-a rows ({files_mb:,.0f} MB): {import_s:.1f} s, peak {peak_mb:,.0f} MB "
              f"({cpu}, {os.cpu_count()} cores)")
        if args.out:
            Path(args.out).write_text(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
