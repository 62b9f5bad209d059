"""The index's answers for recently searched wordings, kept in memory: a loaded index never changes, so the candidate
list of a wording in a label's part of the knowledge base is the same every time it is searched.

Clinical wordings recur ("fiebre", "TAC", "dolor abdominal" in case after case), a coder reopens a task, Label
Studio asks again for a whole project: each repeat skips encoding, the vector search, the n-gram product and the
fusion. What changes between two searches of one wording (a project's learned terms, the re-ranker's reading, the
hierarchy fill) is applied after the memo, on every call; a new index (a model swap, a rebuild) comes with a new
Linker and so an empty memo.

Bounded (least recently used out first) and shared by the threads of a process. A list is kept as one bytes object
(its candidates' fields, marshalled), which the garbage collector does not track: tens of thousands of Candidate
objects held for the life of a process would make every full collection walk them, a pause the request that
triggers it waits through (bench/gc_pause.py).
"""

from __future__ import annotations

import marshal
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import fields

from clinlinker.search.candidates import Candidate

DEFAULT_SIZE = 10_000  # wordings kept per process: about 30 MB (3 KB a wording at 25 candidates, measured)
FIELDS = tuple(f.name for f in fields(Candidate))


class SearchMemo:
    """`search(index, texts, depth, part, allowed)`: index.search's lists, each wording searched only the first
    time it is seen with that part and depth. `part` names the label's part of the knowledge base (`allowed` is
    its mask); size 0 keeps nothing."""

    def __init__(self, size: int = DEFAULT_SIZE):
        if size < 0:
            raise ValueError("the memo's size must be 0 or more")
        self.size = size
        self._lists: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._lists)

    def search(self, index, texts: Sequence[str], depth: int, part, allowed=None) -> list[list[Candidate]]:
        if not self.size:
            return index.search(list(texts), depth, allowed=allowed)
        keys = [(text, part, depth) for text in texts]
        found = {}
        with self._lock:
            for key in keys:
                lists = self._lists.get(key)
                if lists is not None:
                    self._lists.move_to_end(key)
                    found[key] = lists
        missing = list(dict.fromkeys(key for key in keys if key not in found))
        answered = dict(zip(missing, index.search([text for text, _, _ in missing], depth, allowed=allowed))) \
            if missing else {}
        with self._lock:
            for key, lists in answered.items():
                self._lists[key] = marshal.dumps(tuple(tuple(getattr(c, name) for name in FIELDS) for c in lists))
            while len(self._lists) > self.size:
                self._lists.popitem(last=False)
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
        # a caller gets lists of its own (it may extend them) of Candidates made again from the kept fields
        return [list(answered[key]) if key in answered else _candidates(found[key]) for key in keys]

    def describe(self) -> dict:
        return {"size": self.size, "wordings": len(self._lists), "hits": self.hits, "misses": self.misses}


def _candidates(kept: bytes) -> list[Candidate]:
    out = []
    for row in marshal.loads(kept):
        candidate = object.__new__(Candidate)  # a frozen dataclass's fields as they were (as Candidate.at_rank)
        candidate.__dict__.update(zip(FIELDS, row))
        out.append(candidate)
    return out
