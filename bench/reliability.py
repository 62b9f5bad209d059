"""The backend's fault campaign as one command: a real `clinlinker serve --workers 2`, a Redis of its own, real
faults; one table of figures (docs/reliability.md).

    python bench/reliability.py                       # SQLite store, the demo gazetteer (lexical)
    python bench/reliability.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench --soak 600
    python bench/reliability.py --index IX            # e.g. a lexical index of the procedures gazetteer
    python bench/reliability.py --instances 2 --runs 3   # two instances on a throwaway PostgreSQL of its own

Rows: fuzz cases and 5xx answers; racing updates (events accepted / stale); SIGKILL under load (accepted / lost,
time to serve again, events pending after the restart); /predict p50 of a 15-span case at 0 / 10k / 100k accepted
links, and right after each accepted link; webhook and predict p99 with Redis frozen (SIGSTOP) and normal; a soak
(server RSS and store size over time). With --instances 2, the campaign of two instances on one PostgreSQL instead
(bench/two_instances.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.records.store import Store  # noqa: E402
from tests.servers import OwnRedis, Server  # noqa: E402

CAPTURES = ROOT / "tests" / "fixtures" / "label_studio"
TEXT = ("Varón de 54 años con fiebre, tos seca y disnea; dolor abdominal en fosa ilíaca derecha. Se realiza "
        "apendicectomía laparoscópica y colecistectomía. Antecedentes de hipertensión arterial, diabetes mellitus "
        "tipo 2, asma bronquial y cefalea tensional; refiere náuseas, vómitos y astenia.")
WORDS = ["fiebre", "tos seca", "disnea", "dolor abdominal", "apendicectomía laparoscópica", "colecistectomía",
         "hipertensión arterial", "diabetes mellitus tipo 2", "asma bronquial", "cefalea tensional", "náuseas",
         "vómitos", "astenia", "fosa ilíaca derecha", "Varón"]


LABEL = ["SINTOMA"]


def fifteen_spans() -> list[dict]:
    spans = []
    for word in WORDS:
        start = TEXT.index(word)
        spans.append({"start": start, "end": start + len(word), "label": LABEL[0]})
    return spans


def predict_body(i: int, project: int = 3) -> dict:
    return {"project": f"{project}.1795651414", "tasks": [{"id": i, "data": {"text": TEXT, "doc_id": f"caso{i % 50}",
                                                                             "mentions": fifteen_spans()}}]}


def webhook(annotation: int, minute: int, code: str, project: int = 7) -> dict:
    start = TEXT.index("fiebre")
    result = [{"id": "r1", "from_name": "label", "to_name": "text", "type": "labels",
               "value": {"start": start, "end": start + 6, "text": "fiebre", "labels": ["SINTOMA"]}},
              {"id": "r1", "from_name": "code", "to_name": "text", "type": "textarea",
               "value": {"start": start, "end": start + 6, "text": [code]}}]
    # project 7: not the fuzz campaign's (its mutations may store newer versions of low annotation ids)
    return {"action": "ANNOTATION_UPDATED", "project": {"id": project},
            "task": {"id": annotation, "data": {"text": TEXT, "doc_id": f"caso{annotation}"}},
            "annotation": {"id": annotation, "task": annotation, "project": project, "result": result,
                           "updated_at": f"2026-11-25T{minute // 60:02d}:{minute % 60:02d}:00.000000Z"}}


def timed(fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - started) * 1000


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


# --- campaigns --------------------------------------------------------------------------------------------------

def fuzz(server, n: int) -> dict:
    from tests.backend.test_fuzz import NASTY, RAW_BODIES, dumps, mutate  # the suite's generators

    seeds = {"/predict": [predict_body(0)],
             "/webhook": [json.loads((CAPTURES / "webhook_annotation_updated.json").read_text())["body"]],
             "/setup": [json.loads((CAPTURES / "setup_request.json").read_text())["body"]],
             "/train": [{"project": 1}], "/sync": [{"project": "3"}]}
    rng = random.Random(1)
    statuses = []
    import urllib.request

    def send(path, data: bytes):
        request = urllib.request.Request(server.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status
        except urllib.error.HTTPError as exc:
            return exc.code

    for i in range(n):
        path = rng.choice(list(seeds))
        statuses.append(send(path, dumps(mutate(rng.choice(seeds[path]), rng))))
    for raw in RAW_BODIES:
        for path in seeds:
            statuses.append(send(path, raw))
    assert NASTY
    return {"cases": len(statuses), "5xx": sum(s >= 500 for s in statuses)}


def racing(server, store_args) -> dict:
    events = [webhook(a, m, f"{a}x{m}") for a in range(40) for m in range(25)]
    random.Random(11).shuffle(events)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda e: server.post("/webhook", e)[0], events))
    codes = links_by_annotation(store_args)
    stale = sum(codes.get(a) != f"{a}x24" for a in range(40))
    return {"events": len(events), "accepted": statuses.count(200), "stale": stale}


def links_by_annotation(store_args) -> dict:
    store = Store(*store_args)
    try:
        return {int(l["annotation"]): l["code"] for l in store.accepted_links("7") if l["annotation"].isdigit()}
    finally:
        store.dispose()


def sigkill(make_server, store_args) -> dict:
    server = make_server(workers=2).start()
    accepted, stop, lock = {}, threading.Event(), threading.Lock()

    def send(worker):
        for minute in range(10_000):
            if stop.is_set():
                return
            for a in range(1000 + worker * 10, 1000 + worker * 10 + 10):
                try:
                    status, _ = server.post("/webhook", webhook(a, minute, f"{a}x{minute}"), timeout=5)
                except (urllib.error.URLError, OSError, http.client.HTTPException):
                    return  # the server is gone (an answer cut short is not an acknowledgement)
                if status == 200:
                    with lock:
                        accepted[a] = max(accepted.get(a, -1), minute)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    server.kill()
    stop.set()
    for t in threads:
        t.join()
    codes = links_by_annotation(store_args)
    lost = sum(1 for a, minute in accepted.items() if a not in codes or int(codes[a].split("x")[1]) < minute)
    started = time.perf_counter()
    restarted = make_server(workers=2).start()
    recovery = time.perf_counter() - started
    health = restarted.get("/health")
    restarted.stop()
    return {"acknowledged_versions": sum(m + 1 for m in accepted.values()), "annotations": len(accepted),
            "lost": lost, "restart_to_serving_s": round(recovery, 2), "pending_after_restart":
            health["intake"]["pending"]}


def add_links(store_args, n: int, offset: int, project: str, pairs=None) -> None:
    """n accepted links written straight into the store, as n/100 annotations of 100: (wording, code) drawn from
    `pairs` (coders' real links, repeated as coders repeat them), or else n distinct wordings made of the 15
    mentions' own words plus a number (the worst case: every learned wording resembles every mention)."""
    store = Store(*store_args)
    rng = random.Random(offset)
    try:
        for a in range(n // 100):
            links = []
            for r in range(100):
                if pairs:
                    word, code = rng.choice(pairs)
                else:
                    word, code = f"{rng.choice(WORDS)} {rng.randrange(10 ** 6)}", rng.choice(CODES)
                links.append({"region": f"r{r}", "filename": "x", "label": "SINTOMA", "start": 0, "end": len(word),
                              "span": word, "code": code, "semantic_rel": "EXACT", "origin": "prediction-changed"})
            store.apply_annotation(project, f"bulk{offset}-{a}", f"bulk{offset}-{a}",
                                   updated_at="2026-11-25T00:00:00Z", body=None, links=links)
    finally:
        store.dispose()


def corpus_pairs(kb) -> list[tuple[str, str]]:
    """(mention, code) of the shared corpora's training links whose code the served knowledge base holds."""
    from clinlinker.links import read_links

    folder = ROOT.parent / "shared" / "data" / "corpora"
    pairs = []
    for path in sorted(folder.glob("*_train.tsv")):
        pairs += [(link.span, link.code) for link in read_links(path) if link.code in kb]
    return pairs


CODES: list[str] = []


def predict_p50(server, n: int = 40, project: int = 3) -> float:
    for i in range(3):
        server.post("/predict", predict_body(i, project))  # the first requests apply the new links
    times = [timed(server.post, "/predict", predict_body(i, project))[1] for i in range(n)]
    return round(statistics.median(times), 1)


def after_each_link(server, n: int = 20) -> float:
    times = []
    for i in range(n):
        server.post("/webhook", webhook(5000 + i, 1, CODES[i % len(CODES)], project=3))
        times.append(timed(server.post, "/predict", predict_body(i))[1])
    return round(statistics.median(times), 1)


def frozen_redis(server, redis_proc) -> dict:
    import signal

    def burst(first):
        hooks, preds = [], []
        for i in range(first, first + 60):
            hooks.append(timed(server.post, "/webhook", webhook(8000 + i, 1, CODES[i % len(CODES)]))[1])
            if i % 6 == 0:
                preds.append(timed(server.post, "/predict", predict_body(i))[1])
        return hooks, preds

    normal_hooks, normal_preds = burst(0)
    os.kill(redis_proc.pid, signal.SIGSTOP)
    try:
        frozen_hooks, frozen_preds = burst(100)
    finally:
        os.kill(redis_proc.pid, signal.SIGCONT)
    return {"webhook_p99_ms": round(pct(normal_hooks, 0.99), 1),
            "webhook_p99_frozen_ms": round(pct(frozen_hooks, 0.99), 1),
            "predict_p99_ms": round(pct(normal_preds, 0.99), 1),
            "predict_p99_frozen_ms": round(pct(frozen_preds, 0.99), 1),
            # every sample, in order: ten predictions each, so the "p99" is their slowest one
            "predict_ms": [round(t, 1) for t in normal_preds],
            "predict_frozen_ms": [round(t, 1) for t in frozen_preds]}


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the gunicorn master and workers)."""
    total = 0
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            stat = (proc_dir / "stat").read_text().split()
            if int(proc_dir.name) == pid or int(stat[3]) == pid:
                total += int((proc_dir / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return round(total / 2 ** 20, 1)


def soak(server, seconds: float, store_args, data_dir: Path) -> list[dict]:
    curve, started, i = [], time.time(), 0
    next_sample = started
    while time.time() - started < seconds:
        server.post("/webhook", webhook(20_000 + i % 2000, i // 2000 + 1, CODES[i % len(CODES)], project=3))
        server.post("/predict", predict_body(i))
        i += 1
        if time.time() >= next_sample:
            size = sum(p.stat().st_size for p in data_dir.glob("backend.sqlite3*")) if store_args[0] is None else None
            curve.append({"t_s": round(time.time() - started), "requests": 2 * i, "rss_mb": rss_mb(server.proc.pid),
                          "sqlite_mb": round(size / 2 ** 20, 2) if size is not None else None})
            next_sample += max(5.0, seconds / 12)
    return curve


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="PostgreSQL store (default: SQLite in a temporary data directory)")
    parser.add_argument("--index", help="index directory to serve (default: the demo gazetteer)")
    parser.add_argument("--fuzz", type=int, default=500, help="generated fuzz cases (default: %(default)s)")
    parser.add_argument("--links", default="0,10000,100000", help="accepted-link counts for the predict p50 row")
    parser.add_argument("--soak", type=float, default=60.0, help="soak seconds (default: %(default)s)")
    parser.add_argument("--label", default="SINTOMA", help="label of the 15 spans (default: %(default)s; e.g. "
                        "PROCEDIMIENTO for a procedures index)")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--instances", type=int, choices=[1, 2], default=1, help="2: two instances on one "
                        "PostgreSQL (its own throwaway server unless --database-url names one)")
    parser.add_argument("--runs", type=int, default=3, help="repeated runs of the two-instance campaign")
    args = parser.parse_args(argv)
    LABEL[0] = args.label
    if args.instances == 2:
        return two_instances(args)

    if args.index:  # the accepted codes must be the served knowledge base's, or nothing is learned
        from clinlinker.search.index import load_index

        kb = load_index(args.index).kb
    else:
        from clinlinker.kb.gazetteer import load_knowledge_base

        kb = load_knowledge_base([ROOT / "clinlinker" / "data" / "demo_gazetteer.tsv"])
    codes = sorted(c.code for c in kb.concepts)
    CODES.extend(random.Random(5).sample(codes, min(2000, len(codes))))
    pairs = corpus_pairs(kb)
    print(f"{len(pairs)} links of the shared corpora have a code of the served knowledge base "
          f"({len(set(pairs))} distinct (mention, code) pairs)" if pairs else
          "no shared corpora: the accepted links are synthetic (distinct wordings)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="clinlinker-reliability-"))
    redis = OwnRedis(work)
    redis_proc = redis.start()
    env = {"REDIS_URL": redis.url}
    if args.database_url:
        env["CLINLINKER_DATABASE_URL"] = args.database_url
    if args.index:
        env["CLINLINKER_INDEX"] = args.index
    store_args = (args.database_url, work / "var")
    servers = []

    def make_server(workers=2):
        server = Server(work, workers=workers, env=env)
        servers.append(server)
        return server

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    figures = {"cpu": cpu, "cores": os.cpu_count(), "store": "postgresql" if args.database_url else "sqlite",
               "index": args.index or "demo gazetteer (lexical)", "label": args.label}
    try:
        server = make_server().start()
        figures["fuzz"] = fuzz(server, args.fuzz)
        print("fuzz", figures["fuzz"], flush=True)
        figures["racing_updates"] = racing(server, store_args)
        print("racing", figures["racing_updates"], flush=True)
        server.stop()
        figures["sigkill"] = sigkill(make_server, store_args)
        print("sigkill", figures["sigkill"], flush=True)
        server = make_server().start()
        figures["predict_p50_ms"], done = {}, 0
        figures["links_source"] = "shared corpora (repeated)" if pairs else "synthetic"
        for target in (int(n) for n in args.links.split(",")):
            add_links(store_args, target - done, offset=target, project="3", pairs=pairs)
            done = target
            figures["predict_p50_ms"][str(target)] = predict_p50(server)
            print("predict p50 at", target, "links:", figures["predict_p50_ms"][str(target)], "ms", flush=True)
        if done:  # the worst case, in a project of its own: as many distinct wordings, all like the mentions
            add_links(store_args, done, offset=1, project="5")
            figures["predict_p50_worst_case_ms"] = {str(done): predict_p50(server, project=5)}
            print("predict p50, worst case:", figures["predict_p50_worst_case_ms"], flush=True)
        figures["predict_p50_right_after_a_link_ms"] = after_each_link(server)
        figures["redis_frozen"] = frozen_redis(server, redis_proc)
        print("redis frozen", figures["redis_frozen"], flush=True)
        figures["soak"] = soak(server, args.soak, store_args, work / "var")
        print("soak", figures["soak"], flush=True)
    finally:
        for server in servers:
            server.stop()
        redis.stop()
    p50 = figures["predict_p50_ms"]
    base = p50.get("0")
    print(f"\nclinlinker reliability campaign: {figures['store']} store, {figures['index']}, accepted links from "
          f"{figures['links_source']}; {cpu}, {os.cpu_count()} cores")
    rows = [("fuzz cases / 5xx", f"{figures['fuzz']['cases']} / {figures['fuzz']['5xx']}"),
            ("racing updates (2 workers): accepted / stale",
             f"{figures['racing_updates']['accepted']} of {figures['racing_updates']['events']} / "
             f"{figures['racing_updates']['stale']} of 40"),
            ("SIGKILL under load: acknowledged versions / lost",
             f"{figures['sigkill']['acknowledged_versions']} / {figures['sigkill']['lost']}"),
            ("restart to serving / pending after restart",
             f"{figures['sigkill']['restart_to_serving_s']} s / {figures['sigkill']['pending_after_restart']}")]
    rows += [(f"predict p50, 15 spans, {n} accepted links", f"{v} ms" + (f" ({v / base:.2f}x)" if base else ""))
             for n, v in p50.items()]
    for n, v in figures.get("predict_p50_worst_case_ms", {}).items():
        rows.append((f"predict p50, {n} distinct look-alike wordings (worst case)",
                     f"{v} ms" + (f" ({v / base:.2f}x)" if base else "")))
    rows += [("predict p50 right after each accepted link", f"{figures['predict_p50_right_after_a_link_ms']} ms"),
             ("webhook p99: normal / Redis frozen", f"{figures['redis_frozen']['webhook_p99_ms']} / "
                                                    f"{figures['redis_frozen']['webhook_p99_frozen_ms']} ms"),
             ("predict p99: normal / Redis frozen", f"{figures['redis_frozen']['predict_p99_ms']} / "
                                                    f"{figures['redis_frozen']['predict_p99_frozen_ms']} ms"),
             ("soak: RSS first / last", f"{figures['soak'][0]['rss_mb']} / {figures['soak'][-1]['rss_mb']} MB"),
             ("soak: SQLite first / last", f"{figures['soak'][0]['sqlite_mb']} / {figures['soak'][-1]['sqlite_mb']} MB")]
    return report(rows, figures, args.out)


def report(rows, figures: dict, out: str | None) -> int:
    """Print the campaign's table; write its figures as JSON to `out` if given."""
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if out:
        Path(out).write_text(json.dumps(figures, indent=2))
    return 0


def two_instances(args) -> int:
    sys.path.insert(0, str(ROOT / "bench"))
    from two_instances import campaign, rows

    from tests.servers import OwnPostgres

    work = Path(tempfile.mkdtemp(prefix="clinlinker-reliability-"))
    redis, postgres = OwnRedis(work), None
    redis.start()
    url = args.database_url
    try:
        if not url:
            postgres = OwnPostgres().start()
            url = postgres.url
        env = {"REDIS_URL": redis.url, **({"CLINLINKER_INDEX": args.index} if args.index else {})}
        figures = campaign(work, env, url, webhook, predict_body, runs=args.runs)
    finally:
        redis.stop()
        if postgres is not None:
            postgres.stop()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    figures.update(cpu=cpu, cores=os.cpu_count(), store="postgresql", instances=2)
    print(f"\nclinlinker reliability campaign, two instances on one PostgreSQL; {cpu}, {os.cpu_count()} cores")
    return report(rows(figures), figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
