"""Encoding mentions and terms into vectors: the dense bi-encoder (PyTorch or ONNX Runtime, packed texts on a CPU,
fp32/bf16/int8), the embedding cache (Redis or in-process), and encoding on a Ray cluster."""

from clinlinker.encode.cache import CachedEncoder, make_cache
from clinlinker.encode.encoders import DEFAULT_MODEL, DenseEncoder

__all__ = ["DEFAULT_MODEL", "CachedEncoder", "DenseEncoder", "make_cache"]
