"""Encoding mentions and terms into vectors: the dense bi-encoder (PyTorch or ONNX Runtime, packed texts on a CPU,
fp32/bf16/int8), the embedding cache (Redis or in-process), encoding on a Ray cluster, and models unpacked from a
PyPI package. The public names load on first use (see clinlinker.search)."""

from importlib import import_module

_PUBLIC = {"CachedEncoder": "clinlinker.encode.cache", "make_cache": "clinlinker.encode.cache",
           "DEFAULT_MODEL": "clinlinker.encode.encoders", "DenseEncoder": "clinlinker.encode.encoders"}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
