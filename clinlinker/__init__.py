"""clinlinker: SNOMED CT candidate generation for Spanish clinical mentions.

The pipeline, one module each:
gazetteer -> knowledge_base -> encoders (dense bi-encoder, lexical char n-grams)
-> cache -> index -> linker (candidates) -> links (TSV) -> evaluation.
"""

__version__ = "0.1.0"

from clinlinker.errors import ClinlinkerError  # noqa: F401
