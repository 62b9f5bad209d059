"""Linking mentions: the linker (an index, the label's part of the knowledge base, the learned terms of accepted
links, the re-ranker) gives each mention up to k distinct candidate concepts with their evidence."""

from clinlinker.linking.learned import LearnedTerms
from clinlinker.linking.linker import Linker

__all__ = ["LearnedTerms", "Linker"]
