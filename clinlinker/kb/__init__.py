"""The knowledge base: concepts, terms and their is-a hierarchy, read from gazetteers, SNOMED CT RF2 releases or
UMLS; its statistics; and label routing, the part of it that serves each span label."""

from clinlinker.kb.gazetteer import file_sha256, load_knowledge_base
from clinlinker.kb.knowledge_base import KnowledgeBase

__all__ = ["KnowledgeBase", "file_sha256", "load_knowledge_base"]
