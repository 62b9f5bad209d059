"""Candidate generation: an index over the knowledge base's terms (Faiss for dense vectors, sparse char n-grams for
the lexical engine, or both fused), saved with a manifest, searched for the k most similar distinct concepts.

The public names load on first use, so that importing a constant of this package (the CLI's parsers do) does not
import scikit-learn and Faiss: `clinlinker serve` execs gunicorn right after parsing its arguments."""

from importlib import import_module

_PUBLIC = {"Candidate": "clinlinker.search.candidates", "build_index": "clinlinker.search.index",
           "load_index": "clinlinker.search.index", "read_manifest": "clinlinker.search.index",
           "save_index": "clinlinker.search.index"}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
