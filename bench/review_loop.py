"""Replay a corpus as a review project against a running backend.

Documents arrive in batches. For each batch: ask the backend for predictions (POST /predict, candidates
read back from /taxonomy, as the coder's picker gets them), score top-1/top-25 against the gold codes,
then "accept" the batch's gold links through the real webhook path (POST /webhook ANNOTATION_CREATED,
processed by the backend's event worker). With --finetune-every N, "Start training" (POST /train) is sent
after every N batches and the replay waits until the fine-tuned model is swapped in.

    python bench/review_loop.py run --index DIR --name NAME [--no-accept] [--finetune-every N]
    python bench/review_loop.py plot                       # docs/review_loop.png from bench/results/review_loop.json

bench/review_loop.sh runs the replays shown in docs/review_loop.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

from common import DATA, ROOT, RESULTS, free_port, machine, save

RESULT_FILE = "review_loop.json"


def call(url: str, body: dict | None = None, timeout: float = 600) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


def documents(corpus: str, seed: int):
    """(filename, text, gold links) in a fixed random order: the project's arrival order."""
    from clinlinker.links import read_links

    by_doc = defaultdict(list)
    for link in read_links(DATA / "corpora" / f"{corpus}_train.tsv"):
        by_doc[link.filename].append(link)
    names = sorted(by_doc)
    random.Random(seed).shuffle(names)
    out = []
    for name in names:
        path = DATA / "corpora" / "texts_train" / f"{name}.txt"
        if path.exists():
            out.append((name, path.read_text(encoding="utf-8"), by_doc[name]))
    return out


def task(i: int, name: str, text: str, links) -> dict:
    return {"id": i, "data": {"text": text, "doc_id": name,
                              "mentions": [{"id": f"m{j}", "start": l.start, "end": l.end, "label": l.label}
                                           for j, l in enumerate(links)]}}


def accepted(i: int, name: str, text: str, links) -> dict:
    """The webhook Label Studio sends when a coder submits the gold codes of this document."""
    from backend.labelstudio.regions import NO_CODE_LEAF, candidate_leaf, mention_node

    result = []
    for j, l in enumerate(links):
        value = {"start": l.start, "end": l.end, "text": text[l.start:l.end]}
        result.append({"id": f"m{j}", "from_name": "label", "to_name": "text", "type": "labels",
                       "value": {**value, "labels": [l.label]}})
        if l.is_no_code:
            code_item = {"type": "taxonomy", "from_name": "snomed",
                         "value": {**value, "taxonomy": [[mention_node(value["text"], l.start, l.end), NO_CODE_LEAF]]}}
        elif l.is_composite:
            code_item = {"type": "textarea", "from_name": "code", "value": {**value, "text": [l.code]}}
        else:
            code_item = {"type": "taxonomy", "from_name": "snomed", "value": {**value, "taxonomy": [[
                mention_node(value["text"], l.start, l.end), candidate_leaf(l.code, "")]]}}
        result.append({"id": f"m{j}", "to_name": "text", **code_item})
    return {"action": "ANNOTATION_CREATED", "project": {"id": 1},
            "task": {"id": i, "data": {"text": text, "doc_id": name}},
            "annotation": {"id": 100000 + i, "task": i, "project": 1, "was_cancelled": False, "result": result}}


def run(args) -> None:
    docs = documents(args.corpus, args.seed)[: args.docs]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tempfile.mkdtemp(prefix="review-loop-")
    env = {**os.environ, "CLINLINKER_INDEX": str(Path(args.index).resolve()), "CLINLINKER_DATA_DIR": data_dir,
           "CLINLINKER_TRAIN_MAX_STEPS": str(args.train_steps), "CLINLINKER_TRAIN_THREADS": str(args.train_threads),
           "CLINLINKER_TRAIN_LR": str(args.train_lr), "CLINLINKER_LOG_LEVEL": "WARNING",
           "CLINLINKER_REDIS_PREFIX": f"review-loop-{port}:"}
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    server = subprocess.Popen([sys.executable, "-m", "clinlinker.cli", "serve", "--port", str(port),
                               "--workers", "1", "--timeout", "900"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL)  # the access log; errors still reach stderr
    curve, trainings = [], []
    try:
        for _ in range(600):
            try:
                health = call(base + "/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("the backend did not start")
                time.sleep(0.5)
        print(f"backend up: {health['engine']} {health['model']}, {health['concepts']} concepts, "
              f"model_version {health['model_version']}")
        reviewed, sent = 0, 0
        for b in range(0, len(docs), args.batch):
            batch = docs[b:b + args.batch]
            tasks = [task(b + i, *doc) for i, doc in enumerate(batch)]
            started = time.perf_counter()
            reply = call(base + "/predict", {"tasks": tasks})
            elapsed = time.perf_counter() - started
            hits1 = hits25 = n = 0
            for name, text, links in batch:
                tree = {node["value"]: [c["value"].split(" | ")[0] for c in node.get("children", [])]
                        for node in call(base + f"/taxonomy?doc={urllib.parse.quote(name)}")}
                from backend.labelstudio.regions import mention_node

                for l in links:
                    if not l.is_clean:
                        continue
                    codes = tree.get(mention_node(text[l.start:l.end], l.start, l.end), [])[:25]
                    n += 1
                    hits1 += bool(codes) and codes[0] == l.code
                    hits25 += l.code in codes
            point = {"reviewed_docs": reviewed, "batch_docs": len(batch), "mentions": n,
                     "top1": round(hits1 / n, 4) if n else None, "top25": round(hits25 / n, 4) if n else None,
                     "model_version": reply["model_version"], "predict_s": round(elapsed, 2)}
            curve.append(point)
            print(f"after {reviewed:4d} docs: next {len(batch)} docs ({n} mentions) top-1 {point['top1']:.3f} "
                  f"top-25 {point['top25']:.3f}  [{reply['model_version']}, predict {elapsed:.1f} s]", flush=True)
            if not args.no_accept:
                for i, doc in enumerate(batch):
                    call(base + "/webhook", accepted(b + i, *doc))
                    sent += 1
                for _ in range(1200):  # the worker consumes the events
                    events = call(base + "/metrics").get("events", {}).get("ANNOTATION_CREATED", {})
                    if events.get("processed", 0) >= sent:
                        break
                    time.sleep(0.25)
            reviewed += len(batch)
            batch_no = b // args.batch + 1
            if args.finetune_every and batch_no % args.finetune_every == 0 and b + args.batch < len(docs):
                before = call(base + "/health")
                t0 = time.perf_counter()
                call(base + "/train", {})
                while True:
                    time.sleep(2)
                    health = call(base + "/health")
                    state = health["training"]
                    if state.get("status") in ("done", "failed") and state.get("job") != \
                            before["training"].get("job"):
                        break
                trainings.append({"after_docs": reviewed, "status": state["status"], "error": state.get("error"),
                                  "seconds": round(time.perf_counter() - t0, 1), "links": state.get("links"),
                                  "model_version": health["model_version"]})
                print(f"fine-tuning after {reviewed} docs: {state['status']} in {time.perf_counter() - t0:.0f} s "
                      f"-> {health['model_version']}", flush=True)
    finally:
        server.terminate()
        server.wait(30)
    path = RESULTS / RESULT_FILE
    data = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    data["machine"] = machine()
    data["runs"][args.name] = {"index": str(args.index), "corpus": args.corpus, "seed": args.seed,
                               "batch_docs": args.batch, "accept": not args.no_accept,
                               "finetune_every_batches": args.finetune_every, "train_steps": args.train_steps,
                               "curve": curve, "trainings": trainings}
    print("written", save(RESULT_FILE, data))


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads((RESULTS / RESULT_FILE).read_text())
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, run in data["runs"].items():
        xs = [p["reviewed_docs"] for p in run["curve"]]
        for ax, key in zip(axes, ("top1", "top25")):
            ax.plot(xs, [p[key] for p in run["curve"]], marker="o", markersize=3, label=name)
            for t in run.get("trainings", []):
                ax.axvline(t["after_docs"], color="grey", lw=0.5, ls=":")
    for ax, key in zip(axes, ("top-1", "top-25")):
        ax.set_xlabel("documents reviewed before the batch")
        ax.set_ylabel(f"{key} accuracy on the next batch (before review)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    corpus = next(iter(data["runs"].values()))["corpus"]
    fig.suptitle(f"review loop replay: {corpus} (dotted lines: fine-tuning swapped in)")
    fig.tight_layout()
    out = ROOT / "docs" / "review_loop.png"
    fig.savefig(out, dpi=110)
    print("plot written to", out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--index", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--corpus", default="medprocner", choices=["distemist", "symptemist", "medprocner"])
    p.add_argument("--docs", type=int, default=250)
    p.add_argument("--batch", type=int, default=25, help="documents per batch")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-accept", action="store_true", help="never send the webhooks: the static baseline")
    p.add_argument("--finetune-every", type=int, default=0, help="send /train after every N batches")
    p.add_argument("--train-steps", type=int, default=100)
    p.add_argument("--train-threads", type=int, default=2)
    p.add_argument("--train-lr", type=float, default=1e-4)
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    sub.add_parser("plot")
    args = parser.parse_args()
    run(args) if args.command == "run" else plot()


if __name__ == "__main__":
    main()
