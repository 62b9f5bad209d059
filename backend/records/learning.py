"""The learned terms of each Label Studio project, kept up to date from the store's ordered log of link changes.

Every serving process holds one LearnedTerms layer per project (or one for all, CLINLINKER_LEARN_ACROSS_PROJECTS)
for the linker it serves. `sync` reads the changes committed since the last one it applied (one indexed query)
and applies them: a new accepted link costs what it adds, however many were accepted before. A process that
starts, swaps to a fine-tuned model, or finds that the log was compacted past its position rebuilds the layers
from one snapshot of the accepted links.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from clinlinker.linking.learned import LearnedTerms

from backend.records.store import reviewed

log = logging.getLogger(__name__)
ALL_PROJECTS = "*"


class _State:
    """The layers of one linker (their vectors come from its encoder) and the change they are up to."""

    def __init__(self, linker):
        self.linker = linker
        self.layers: dict[str, LearnedTerms] = {}
        self.seq = -1


class LearnedLayers:
    KEEP_LINKERS = 2  # the serving linker and the one a hot swap is replacing (requests still running on it)

    def __init__(self, store, *, untouched: bool = False, across_projects: bool = False):
        self.store = store
        self.untouched = untouched
        self.across_projects = across_projects
        self._lock = threading.Lock()
        self._states: dict[int, _State] = {}  # id(linker) -> its layers, newest last
        self.rebuilds = 0

    def key(self, project: str | None) -> str | None:
        if self.across_projects:
            return ALL_PROJECTS
        return project

    def layer(self, project: str | None, linker=None) -> LearnedTerms | None:
        """The project's layer for `linker` (default: the newest synced); None when it has learned nothing."""
        key = self.key(project)
        if key is None or not self._states:
            return None
        state = self._states.get(id(linker)) if linker is not None else list(self._states.values())[-1]
        if state is None or (linker is not None and state.linker is not linker):
            return None
        return state.layers.get(key)

    def sync(self, linker) -> None:
        """Bring the layers of `linker` up to the store's accepted links. A store outage keeps them as they were."""
        try:
            with self._lock:
                state = self._states.get(id(linker))
                if state is None or state.linker is not linker:
                    self._rebuild(linker)
                    return
                changes = self.store.changes_since(state.seq)
                if changes is None:
                    log.info("the link-change log was compacted past this process's position: rebuilding")
                    self._rebuild(linker)
                    return
                if changes:
                    self._apply(state, changes)
        except Exception as exc:  # noqa: BLE001 - serving goes on with what was learned
            log.warning("cannot update the learned terms (%s: %s); serving them as they were", type(exc).__name__,
                        str(exc).splitlines()[0][:300])

    @staticmethod
    def _new(linker) -> LearnedTerms:
        return LearnedTerms(linker.index.kb, linker.index.term_encoder)

    def _rebuild(self, linker) -> None:
        seq, rows = self.store.learned_snapshot()
        pairs = defaultdict(list)
        for project, span, code, origin in rows:
            if reviewed(origin, self.untouched):
                pairs[self.key(project)].append((span or "", code or ""))
        state = _State(linker)
        state.layers = {key: self._new(linker).replace(items) for key, items in pairs.items()}
        state.seq = seq
        self._states.pop(id(linker), None)
        self._states[id(linker)] = state
        while len(self._states) > self.KEEP_LINKERS:
            self._states.pop(next(iter(self._states)))
        self.rebuilds += 1
        if rows:
            log.info("learned terms: %s", self.describe())

    def _apply(self, state: _State, changes) -> None:
        per_key = defaultdict(list)
        for seq, project, span, code, origin, delta in changes:
            if reviewed(origin, self.untouched):
                per_key[self.key(project)].append((span, code, delta))
            state.seq = seq
        for key, items in per_key.items():
            layer = state.layers.get(key)
            if layer is None:
                layer = state.layers[key] = self._new(state.linker)
            layer.apply(items)

    def describe(self) -> dict:
        state = list(self._states.values())[-1] if self._states else None
        layers = dict(state.layers) if state else {}
        total = {"terms": 0, "wordings": 0, "skipped": {}}
        for layer in layers.values():
            d = layer.describe()
            total["terms"] += d["terms"]
            total["wordings"] += d["wordings"]
            for reason, n in d["skipped"].items():
                total["skipped"][reason] = total["skipped"].get(reason, 0) + n
        return {**total, "projects": {key: layer.describe() for key, layer in sorted(layers.items())},
                "shared_across_projects": self.across_projects, "position": state.seq if state else None}
