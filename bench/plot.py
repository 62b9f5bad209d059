"""docs/benchmarks.png from bench/results/*.json: encoding throughput per path, CPU and GPU."""

from __future__ import annotations

import json

from common import RESULTS, ROOT


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, RESULTS / f) for name, f in (("CPU (2 cores, this machine)", "encoding-cpu.json"),
                                                  ("GPU H200, batch 32", "encoding-gpu-batch32.json"),
                                                  ("GPU H200, batch 512", "encoding-gpu-batch512.json"))
              if (RESULTS / f).exists()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2))
    axes = [axes] if len(panels) == 1 else axes
    for ax, (title, path) in zip(axes, panels):
        rows = json.loads(path.read_text())["rows"]
        labels = ["seed path" if r["path"].startswith("seed") else f"clinlinker {r['precision']}" for r in rows]
        values = [r["mentions_per_s"] for r in rows]
        bars = ax.bar(labels, values, color=["#999999"] + ["#2e86c1"] * (len(rows) - 1))
        for bar, r in zip(bars, rows):
            ax.annotate(f"{r['ratio_vs_seed']:.2f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mentions / s")
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle("Encoding real mentions with a RoBERTa-base-sized model (ratio vs the seed's path)", fontsize=11)
    fig.tight_layout()
    out = ROOT / "docs" / "benchmarks.png"
    fig.savefig(out, dpi=110)
    print("written", out)


if __name__ == "__main__":
    main()
