"""Housekeeping inside each backend process: expired candidate lists and old link changes are dropped.

Nothing here is needed for correctness: every webhook's facts are stored before Label Studio gets its answer
(backend/records/webhooks.py, backend/records/store.py), and every process reads the accepted links from the store.
This only keeps the store bounded. Several processes may run it at once: each step is an idempotent delete.
"""

from __future__ import annotations

import logging
import random
import threading

log = logging.getLogger(__name__)


class Housekeeper:
    def __init__(self, store, *, interval: float = 300.0):
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Housekeeper":
        self._thread = threading.Thread(target=self._run, name="clinlinker-housekeeping", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        # spread the processes' rounds: they all start together under gunicorn
        while not self._stop.wait(self.interval * random.uniform(0.5, 1.0)):
            self.run_once()

    def run_once(self) -> dict:
        try:
            done = self.store.compact()
        except Exception as exc:  # noqa: BLE001 - a store hiccup: try again next round
            log.warning("housekeeping failed (%s: %s)", type(exc).__name__, str(exc).splitlines()[0][:300])
            return {}
        if any(done.values()):
            log.info("housekeeping: %s", done)
        return done
