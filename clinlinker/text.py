"""Text folding shared by the lexical engine and evaluation."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """Lower-case, strip accents (NFKD, combining marks dropped) and collapse whitespace.

    >>> fold("  Apendicectomía   LAPAROSCÓPICA ")
    'apendicectomia laparoscopica'
    """
    decomposed = unicodedata.normalize("NFKD", text.lower())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", stripped).strip()
