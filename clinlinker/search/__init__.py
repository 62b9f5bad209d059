"""Candidate generation: an index over the knowledge base's terms (Faiss for dense vectors, sparse char n-grams for
the lexical engine, or both fused), saved with a manifest, searched for the k most similar distinct concepts."""

from clinlinker.search.candidates import Candidate
from clinlinker.search.index import build_index, load_index, read_manifest, save_index

__all__ = ["Candidate", "build_index", "load_index", "read_manifest", "save_index"]
