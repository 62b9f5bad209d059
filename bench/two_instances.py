"""The fault campaign of a team on one PostgreSQL: two `clinlinker serve --workers 2` instances (each its own data
directory), one throwaway PostgreSQL and one Redis of their own, webhooks in Label Studio's format sent to either
instance from several threads, out of order, with /predict load on both. Run by `bench/reliability.py --instances 2`.

Rows, each over --runs repeated runs: deletions (ids only, as ANNOTATIONS_DELETED sends them) racing the versions of
the same annotations through both instances: deleted annotations served again, stale, lost; SIGKILL of one instance
in a burst: acknowledged versions lost, the live instance's webhook latency during the fault, the killed one's
restart to /health UP under load; SIGSTOP of one instance for 6 s in a burst: the live instance's webhook latency
and its /predict answers over 1 s while the other is frozen.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor

from backend.records.store import Store
from tests.servers import Server

PROJECT = 7


def _post(server, body, timeout=10):
    try:
        return server.post("/webhook", body, timeout=timeout)[0]
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return None  # no answer: not an acknowledgement


def _stored(url, work) -> dict:
    store = Store(url, work / "check")
    try:
        return {int(l["annotation"]): l["code"] for l in store.accepted_links(str(PROJECT))}
    finally:
        store.dispose()


def deletions_race(servers, url, work, webhook, run: int) -> dict:
    base = 10_000 * (run + 1)
    annotations = list(range(base, base + 60))
    deleted = set(annotations[::2])
    events = [webhook(a, m, f"{a}x{m}") for a in annotations for m in range(5)]
    events += [{"action": "ANNOTATIONS_DELETED", "project": {"id": PROJECT}, "annotations": [{"id": a}]}
               for a in deleted]
    random.Random(run).shuffle(events)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda ie: _post(servers[ie[0] % 2], ie[1]), enumerate(events)))
    codes = _stored(url, work)
    return {"events": len(events), "accepted": statuses.count(200),
            "deleted_back": sum(a in codes for a in deleted),
            "stale": sum(codes.get(a) != f"{a}x4" for a in annotations if a not in deleted)}


class Burst:
    """Webhooks to both instances (4 threads each) and /predict to both (1 thread each) until stopped; records what
    each instance acknowledged and how long each answer took, with the time it was sent."""

    def __init__(self, servers, webhook, predict_body, first: int):
        self.servers, self.webhook, self.predict_body, self.first = servers, webhook, predict_body, first
        self.stop, self.lock = threading.Event(), threading.Lock()
        self.acked, self.latency, self.predicts = {}, {0: [], 1: []}, {0: [], 1: []}
        self.threads = [threading.Thread(target=self._send, args=(i, w)) for i in (0, 1) for w in range(4)]
        self.threads += [threading.Thread(target=self._predict, args=(i,)) for i in (0, 1)]

    def _send(self, instance: int, worker: int) -> None:
        first = self.first + instance * 1000 + worker * 10
        for minute in range(100_000):
            for a in range(first, first + 10):
                if self.stop.is_set():
                    return
                sent = time.perf_counter()
                status = _post(self.servers[instance], self.webhook(a, minute, f"{a}x{minute}"), timeout=15)
                with self.lock:
                    self.latency[instance].append((sent, time.perf_counter() - sent, status))
                    if status == 200:
                        self.acked[a] = max(self.acked.get(a, -1), minute)
                if status is None:
                    time.sleep(0.05)

    def _predict(self, instance: int) -> None:
        i = 0
        while not self.stop.is_set():
            sent = time.perf_counter()
            try:
                status = self.servers[instance].post("/predict", self.predict_body(i), timeout=15)[0]
            except (urllib.error.URLError, OSError, http.client.HTTPException):
                status = None
                time.sleep(0.05)
            with self.lock:
                self.predicts[instance].append((sent, time.perf_counter() - sent, status))
            i += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def lost(self, codes: dict) -> int:
        return sum(1 for a, minute in self.acked.items() if a not in codes or int(codes[a].split("x")[1]) < minute)


def _window(samples, start, end):
    return [s for s in samples if start <= s[0] + s[1] and s[0] <= end]


def _ms(values):
    values = sorted(values)
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(values[len(values) // 2] * 1000, 1),
            "p99": round(values[min(len(values) - 1, int(0.99 * len(values)))] * 1000, 1),
            "max": round(values[-1] * 1000, 1), "over_1s": sum(v > 1.0 for v in values)}


def kill_one(servers, make_server, url, work, webhook, predict_body, run: int) -> dict:
    with Burst(servers, webhook, predict_body, first=100_000 * (run + 1)) as burst:
        time.sleep(3)
        killed_at = time.perf_counter()
        servers[0].kill()
        time.sleep(2)
        restarted_at = time.perf_counter()
        servers[0] = make_server("a").start()
        serving_at = time.perf_counter()
        time.sleep(2)
    live = _window(burst.latency[1], killed_at, serving_at)
    return {"acknowledged": len(burst.acked), "lost": burst.lost(_stored(url, work)),
            "live_webhooks_during_fault_ms": _ms([s[1] for s in live if s[2] == 200]),
            "live_webhook_errors_during_fault": sum(s[2] != 200 for s in live),
            "restart_to_serving_s": round(serving_at - restarted_at, 2)}


def freeze_one(servers, url, work, webhook, predict_body, run: int, seconds: float = 6.0) -> dict:
    import os
    import signal

    with Burst(servers, webhook, predict_body, first=200_000 * (run + 1)) as burst:
        time.sleep(3)
        frozen_at = time.perf_counter()
        os.killpg(servers[0].proc.pid, signal.SIGSTOP)  # the master and both workers, mid-burst
        time.sleep(seconds)
        thawed_at = time.perf_counter()
        os.killpg(servers[0].proc.pid, signal.SIGCONT)
        time.sleep(3)
    live = _window(burst.latency[1], frozen_at, thawed_at)
    predicts = _window(burst.predicts[1], frozen_at, thawed_at)
    return {"acknowledged": len(burst.acked), "lost": burst.lost(_stored(url, work)),
            "live_webhooks_during_freeze_ms": _ms([s[1] for s in live if s[2] == 200]),
            "live_webhook_errors_during_freeze": sum(s[2] != 200 for s in live),
            "live_predicts_during_freeze_ms": _ms([s[1] for s in predicts if s[2] == 200])}


def campaign(work, env: dict, url: str, webhook, predict_body, runs: int = 3) -> dict:
    """Every row, `runs` times, on two instances of one PostgreSQL (`url`)."""
    env = {**env, "CLINLINKER_DATABASE_URL": url}
    made = []

    def make_server(name: str):
        (work / name).mkdir(exist_ok=True)
        server = Server(work / name, workers=2, env=env)
        made.append(server)
        return server

    figures = {"runs": runs, "race": [], "sigkill": [], "sigstop": []}
    try:
        servers = [make_server("a").start(), make_server("b").start()]
        for run in range(runs):
            figures["race"].append(deletions_race(servers, url, work, webhook, run))
            print("two instances, deletions race", figures["race"][-1], flush=True)
            figures["sigkill"].append(kill_one(servers, make_server, url, work, webhook, predict_body, run))
            print("two instances, SIGKILL", figures["sigkill"][-1], flush=True)
            figures["sigstop"].append(freeze_one(servers, url, work, webhook, predict_body, run))
            print("two instances, SIGSTOP", figures["sigstop"][-1], flush=True)
    finally:
        for server in made:
            server.stop()
    return figures


def rows(figures: dict) -> list[tuple[str, str]]:
    race, kill, stop = figures["race"], figures["sigkill"], figures["sigstop"]

    def each(values):
        return " / ".join(str(v) for v in values)

    return [
        ("runs", str(figures["runs"])),
        ("deletions racing versions: deleted back / stale / lost (per run)",
         f"{each(r['deleted_back'] for r in race)} / {each(r['stale'] for r in race)} / "
         f"{each(r['events'] - r['accepted'] for r in race)} unanswered"),
        ("SIGKILL in a burst: acknowledged annotations / lost", f"{each(k['acknowledged'] for k in kill)} / "
                                                               f"{each(k['lost'] for k in kill)}"),
        ("SIGKILL: live instance's webhook p99 / max during the fault",
         each(f"{k['live_webhooks_during_fault_ms'].get('p99')}/{k['live_webhooks_during_fault_ms'].get('max')} ms"
              for k in kill)),
        ("SIGKILL: restart to serving under load", each(f"{k['restart_to_serving_s']} s" for k in kill)),
        ("SIGSTOP 6 s: acknowledged / lost", f"{each(s['acknowledged'] for s in stop)} / "
                                            f"{each(s['lost'] for s in stop)}"),
        ("SIGSTOP: live instance's webhooks: p99 / max / over 1 s",
         each(f"{s['live_webhooks_during_freeze_ms'].get('p99')}/{s['live_webhooks_during_freeze_ms'].get('max')} ms"
              f"/{s['live_webhooks_during_freeze_ms'].get('over_1s')}" for s in stop)),
        ("SIGSTOP: live instance's /predict: p99 / over 1 s",
         each(f"{p.get('p99')} ms/{p.get('over_1s')}" for p in (s["live_predicts_during_freeze_ms"] for s in stop))),
    ]
