"""The index's answers for recently searched wordings, kept in memory: a loaded index never changes, so the candidate
list of a wording in a label's part of the knowledge base is the same every time it is searched.

Clinical wordings recur ("fiebre", "TAC", "dolor abdominal" in case after case), a coder reopens a task, Label
Studio asks again for a whole project: each repeat skips encoding, the vector search, the n-gram product and the
fusion. What changes between two searches of one wording (a project's learned terms, the re-ranker's reading, the
hierarchy fill) is applied after the memo, on every call; a new index (a model swap, a rebuild) comes with a new
Linker and so an empty memo.

Bounded (least recently used out first) and shared by the threads of a process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from clinlinker.search.candidates import Candidate

DEFAULT_SIZE = 10_000  # wordings kept per process: about 50 MB (5 KB a wording at 25 candidates, measured)


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
        if missing:
            answered = index.search([text for text, _, _ in missing], depth, allowed=allowed)
            found.update(zip(missing, answered))
            with self._lock:
                for key, lists in zip(missing, answered):
                    self._lists[key] = lists
                while len(self._lists) > self.size:
                    self._lists.popitem(last=False)
        with self._lock:
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
        return [list(found[key]) for key in keys]  # copies: a caller may extend its list

    def describe(self) -> dict:
        return {"size": self.size, "wordings": len(self._lists), "hits": self.hits, "misses": self.misses}
