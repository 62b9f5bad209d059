"""clinlinker: SNOMED CT candidate generation for Spanish clinical mentions. The library knows nothing of Label
Studio (backend/ adapts it). Its stage packages, in the order data flows (docs/architecture.md):

kb (concepts, terms, hierarchy, label routing) -> encode (bi-encoder, cache) -> search (index, candidates) ->
rerank (cross-encoder) -> linking (linker, learned terms) -> train, evaluate; links.py reads and writes link files.

What a library user needs, importable from here (loaded on first use):

    from clinlinker import load_knowledge_base, build_index, save_index, load_index, Linker
    index = build_index(load_knowledge_base(["gazetteer.tsv"]))          # lexical; encoder=DenseEncoder(...) for dense
    Linker(index).link(["apendicectomía laparoscópica"], k=25)
"""

__version__ = "0.1.0"

from clinlinker.errors import ClinlinkerError  # noqa: E402

_API = {
    "load_knowledge_base": "clinlinker.kb", "KnowledgeBase": "clinlinker.kb",
    "DenseEncoder": "clinlinker.encode", "build_index": "clinlinker.search", "save_index": "clinlinker.search",
    "load_index": "clinlinker.search", "Candidate": "clinlinker.search", "Linker": "clinlinker.linking",
    "read_links": "clinlinker.links", "write_links": "clinlinker.links", "Link": "clinlinker.links",
    "evaluate_links": "clinlinker.evaluate",
}
__all__ = ["ClinlinkerError", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'clinlinker' has no attribute {name!r}")
