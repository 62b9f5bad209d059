"""/predict under concurrency, and the webhook's latency while /predict is under load, for this tree and another git
ref side by side in one run: two checkouts, the same index (each built by its own `clinlinker index` from the same
gazetteer), the same requests, the real backend (`clinlinker serve` under gunicorn, --workers 2, no Redis),
measured interleaved round by round so that the machine's drift hits both alike.

Requests: tasks of 13-17 spans from the MedProcNER training texts (../shared/data), each request a new document
(its doc_id made unique), a lexical index of the MedProcNER procedures gazetteer. Stores: SQLite (the data
directory's file) and PostgreSQL (a throwaway server, tests/servers.py); a ref older than the store of record has
no store to choose and is measured as it is.

    python bench/concurrency.py --ref 47b3f8a --stores sqlite,postgresql --clients 1,4,8 --seconds 8 --rounds 3
    python bench/concurrency.py --plot bench/results/concurrency-NAME.json     # docs/concurrency.png

Prints, per store and client count, each side's requests per second and p50/p99 latency (medians over rounds) and
the ratio of this tree to the ref (median of the rounds' ratios); with --webhook-clients, the webhook's p50/p99
(every round's webhooks pooled, one every 50 ms) while /predict runs at that many clients. Writes bench/results/concurrency-<name>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import CACHE, DATA, ROOT, free_port, machine, save

sys.path.insert(0, str(ROOT))
from tests.servers import OwnPostgres  # noqa: E402

GAZETTEER = DATA / "gazetteers" / "medprocner_procedures_es.tsv"


def checkout(ref: str) -> Path:
    """A worktree of `ref` under bench/.cache (kept between runs)."""
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    path = CACHE / f"ref-{sha}"
    if not (path / "backend").is_dir():
        subprocess.run(["git", "worktree", "add", "--force", "--detach", str(path), sha], cwd=ROOT, check=True,
                       capture_output=True)
    return path


def index_of(tree: Path) -> Path:
    out = CACHE / f"concurrency-index-{tree.name}"
    if not (out / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "clinlinker.cli", "--log-level", "WARNING", "index", "--gazetteer",
                        str(GAZETTEER), "--model", "char-ngrams", "--out", str(out)], cwd=tree, check=True,
                       env={**os.environ, "PYTHONPATH": str(tree)})
    return out


class Backend:
    def __init__(self, name: str, tree: Path, index: Path, database_url: str | None, workers: int):
        self.name, self.tree, self.port = name, tree, free_port()
        self.data = Path(tempfile.mkdtemp(prefix=f"clinlinker-conc-{name}-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLINLINKER_") and k != "REDIS_URL"}
        env.update(PYTHONPATH=str(tree), CLINLINKER_INDEX=str(index), CLINLINKER_DATA_DIR=str(self.data),
                   CLINLINKER_LOG_LEVEL="WARNING")
        if database_url:
            env["CLINLINKER_DATABASE_URL"] = database_url
        self.log = open(self.data / "server.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "clinlinker.cli", "serve", "--host", "127.0.0.1",
                                      "--port", str(self.port), "--workers", str(workers)], cwd=tree, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while True:
            assert self.proc.poll() is None, (self.data / "server.log").read_text()[-2000:]
            try:
                status, _ = request(self.port, "GET", "/health", None)
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the backend did not start"
            time.sleep(0.5)

    def stop(self):
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def request(port: int, method: str, path: str, body, connection=None):
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    reply = conn.getresponse()
    payload = reply.read()
    if connection is None:
        conn.close()
    return reply.status, payload


def cases() -> list[dict]:
    """The data of every MedProcNER training case of 13-17 gold spans (bench/serving.py's cases)."""
    from serving import cases as serving_cases

    return [task["data"] for task in serving_cases(10 ** 6)[0]]


class Counter:
    def __init__(self):
        self.n, self.lock = 0, threading.Lock()

    def next(self) -> int:
        with self.lock:
            self.n += 1
            return self.n


def load(port: int, clients: int, seconds: float, pool: list[dict], counter: Counter, tag: str) -> dict:
    """`clients` threads POST /predict back to back for `seconds`; each request a new document."""
    latencies, errors, stop = [], [0], time.monotonic() + seconds

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < stop:
            n = counter.next()
            case = pool[n % len(pool)]
            body = {"project": "9", "tasks": [{"id": n, "data": {**case, "doc_id": f"{case['doc_id']}-{tag}{n}"}}]}
            t0 = time.perf_counter()
            try:
                status, _ = request(port, "POST", "/predict", body, conn)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status = 0
            elapsed = time.perf_counter() - t0
            if status == 200:
                latencies.append(elapsed)
            else:
                errors[0] += 1
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    return {"rps": len(latencies) / wall, "p50_ms": pct(latencies, .5) * 1000, "p99_ms": pct(latencies, .99) * 1000,
            "requests": len(latencies), "errors": errors[0]}


def webhook_body(n: int) -> dict:
    text = "Paciente con fiebre y dolor abdominal."
    result = [{"id": "r1", "from_name": "label", "to_name": "text", "type": "labels",
               "value": {"start": 13, "end": 19, "text": "fiebre", "labels": ["SINTOMA"]}},
              {"id": "r1", "from_name": "code", "to_name": "text", "type": "textarea",
               "value": {"start": 13, "end": 19, "text": ["386661006"]}}]
    return {"action": "ANNOTATION_CREATED", "project": {"id": 9},
            "task": {"id": n, "data": {"text": text, "doc_id": f"hook{n}"}},
            "annotation": {"id": n, "task": n, "project": 9, "result": result,
                           "updated_at": "2026-12-01T10:00:00.000000Z"}}


def webhooks_under_load(port: int, clients: int, seconds: float, pool, counter: Counter, tag: str) -> dict:
    """The webhook's latencies, one every 50 ms, while `clients` threads keep /predict busy."""
    hooks, done = [], threading.Event()

    def sender():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not done.is_set():
            n = counter.next()
            t0 = time.perf_counter()
            status, _ = request(port, "POST", "/webhook", webhook_body(1_000_000 + n), conn)
            if status == 200:
                hooks.append(time.perf_counter() - t0)
            time.sleep(0.05)
        conn.close()

    thread = threading.Thread(target=sender)
    thread.start()
    predict = load(port, clients, seconds, pool, counter, tag)
    done.set()
    thread.join()
    return {"latencies": hooks, "predict_rps": predict["rps"]}


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", default="47b3f8a", help="the git ref to compare with (default: %(default)s)")
    p.add_argument("--stores", default="sqlite,postgresql")
    p.add_argument("--clients", default="1,4,8")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--webhook-clients", type=int, default=4, help="/predict clients while webhooks are timed "
                   "(0: no webhook figures)")
    p.add_argument("--name", default="run")
    p.add_argument("--plot", metavar="JSON", help="draw docs/concurrency.png from a run's results, run nothing")
    args = p.parse_args(argv)
    if args.plot:
        print("written", plot(json.loads(Path(args.plot).read_text(encoding="utf-8"))))
        return 0
    if not GAZETTEER.is_file():
        print(f"needs {GAZETTEER} (../shared/data)")
        return 2
    clients = [int(c) for c in args.clients.split(",")]
    ref_tree = checkout(args.ref)
    trees = {"this": ROOT, args.ref: ref_tree}
    indexes = {name: index_of(tree) for name, tree in trees.items()}
    pool, counter = cases(), Counter()
    print(f"{len(pool)} cases of 13-17 spans; {machine().get('cpu')}, {os.cpu_count()} cores")
    postgres = OwnPostgres().start() if "postgresql" in args.stores else None
    results = {"machine": machine(), "ref": args.ref, "workers": args.workers, "seconds": args.seconds,
               "rounds": args.rounds, "stores": {}}
    try:
        for store in args.stores.split(","):
            backends = {}
            for name, tree in trees.items():
                url = None
                if store == "postgresql":
                    from sqlalchemy import create_engine, text

                    db = f"conc_{name.replace('.', '_').replace('-', '_')}_{os.getpid()}"
                    engine = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
                    with engine.connect() as conn:
                        conn.execute(text(f'CREATE DATABASE "{db}"'))
                    engine.dispose()
                    url = postgres.url.rsplit("/", 1)[0] + f"/{db}"
                backends[name] = Backend(name, tree, indexes[name], url, args.workers)
            try:
                for backend in backends.values():  # warm: lazy imports, first requests of each worker
                    load(backend.port, 2, 2.0, pool, counter, f"warm{backend.name}")
                rows = {c: {name: [] for name in backends} for c in clients}
                hooks = {name: [] for name in backends}
                for r in range(args.rounds):
                    order = list(backends) if r % 2 == 0 else list(backends)[::-1]
                    for c in clients:
                        for name in order:
                            rows[c][name].append(load(backends[name].port, c, args.seconds, pool, counter,
                                                      f"{store}{name}r{r}c{c}-"))
                    if args.webhook_clients:
                        for name in order:
                            hooks[name].append(webhooks_under_load(backends[name].port, args.webhook_clients,
                                                                   args.seconds, pool, counter, f"h{name}{r}-"))
                results["stores"][store] = summarise(rows, hooks, args.ref)
                print_store(store, results["stores"][store], args.ref)
            finally:
                for backend in backends.values():
                    backend.stop()
    finally:
        if postgres:
            postgres.stop()
    print("written", save(f"concurrency-{args.name}.json", results))
    return 0


def summarise(rows, hooks, ref) -> dict:
    out = {"clients": {}, "webhook": {}}
    for c, by_name in rows.items():
        entry = {}
        for name, runs in by_name.items():
            entry[name] = {key: round(statistics.median(run[key] for run in runs), 1)
                           for key in ("rps", "p50_ms", "p99_ms")} | {"errors": sum(run["errors"] for run in runs),
                                                                       "rounds_rps": [round(run["rps"], 1)
                                                                                      for run in runs]}
        ratios = [a["rps"] / b["rps"] for a, b in zip(by_name["this"], by_name[ref]) if b["rps"]]
        entry["ratio"] = round(statistics.median(ratios), 2) if ratios else None
        entry["ratios"] = [round(x, 2) for x in ratios]
        out["clients"][c] = entry
    for name, runs in hooks.items():
        if runs:  # every round's webhooks pooled: a round holds ~160, too few for a p99 of its own
            pooled = [x for run in runs for x in run["latencies"]]
            out["webhook"][name] = {"webhook_p50_ms": round(pct(pooled, .5) * 1000, 1),
                                    "webhook_p99_ms": round(pct(pooled, .99) * 1000, 1), "webhooks": len(pooled),
                                    "predict_rps": round(statistics.median(run["predict_rps"] for run in runs), 1)}
    return out


def print_store(store, summary, ref) -> None:
    print(f"\n{store}: req/s, p50 / p99 ms (medians over rounds); ratio = this / {ref} (median of rounds)")
    for c, entry in summary["clients"].items():
        a, b = entry["this"], entry[ref]
        print(f"  c={c}: this {a['rps']} req/s ({a['p50_ms']} / {a['p99_ms']} ms)  {ref} {b['rps']} req/s "
              f"({b['p50_ms']} / {b['p99_ms']} ms)  ratio {entry['ratio']} {entry['ratios']}  errors "
              f"{a['errors']}/{b['errors']}")
    for name, hook in summary["webhook"].items():
        print(f"  webhook under load, {name}: p50 {hook['webhook_p50_ms']} ms, p99 {hook['webhook_p99_ms']} ms "
              f"({hook['webhooks']} webhooks; /predict {hook['predict_rps']} req/s)")


def plot(results: dict) -> Path:
    """Requests per second against clients, each store a panel, this tree beside the ref."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stores = results["stores"]
    fig, axes = plt.subplots(1, len(stores), figsize=(5.2 * len(stores), 3.8), squeeze=False)
    for ax, (store, summary) in zip(axes[0], stores.items()):
        clients = [int(c) for c in summary["clients"]]
        for name, style in (("this", "-o"), (results["ref"], "--s")):
            rps = [summary["clients"][str(c) if str(c) in summary["clients"] else c][name]["rps"] for c in clients]
            ax.plot(clients, rps, style, label=name if name != "this" else "this tree")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("/predict requests per second")
        ax.set_xticks(clients)
        ax.set_title(f"{store}, gunicorn --workers {results['workers']}", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    fig.suptitle(f"15-span MedProcNER cases, lexical engine; {results['machine'].get('cpu')}, 2 cores", fontsize=10)
    fig.tight_layout()
    out = ROOT / "docs" / "concurrency.png"
    fig.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    sys.exit(main())
