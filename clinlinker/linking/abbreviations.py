"""Abbreviations: a mention's acronyms ("TAC", "R.T.U.", "DP") searched also as their long forms.

Spelling says little about an acronym's concept: "TAC" shares no character 3-gram with "tomografía computarizada",
and "T.A.C." none with "TAC". Where an acronym's long forms are known, the mention is also searched with each long
form in the acronym's place ("retirada de catéter de DP" -> "retirada de catéter de diálisis peritoneal"), and a
concept keeps the better of its similarities. The long forms come from
- the knowledge base: a term that is an acronym alone ("RMN") names its concept's other terms; a term that defines
  one ("alanina aminotransferasa (ALT)") gives the words before the parenthesis that the letters spell;
- the accepted links (the learned terms): an acronym accepted alone for a code names that concept's terms, and a
  wording that defines one ("tomografía axial computarizada (TAC) abdominal") gives its long form;
- the mention's own document: a clinical case defines its acronyms once ("presión intraocular (PIO)", "PIO
  (presión intraocular)") and uses them bare afterwards; what the document defines is tried first, before any
  form the knowledge base or the links attest (`document_forms`, `variants(..., local=...)`).
Acronyms are compared without dots, case kept, plural s dropped ("T.A.C." = "TAC", "AINEs" = "AINE").

    >>> abbreviations = Abbreviations.from_kb(kb).with_links([("tomografía axial computarizada (TAC)", "77477000")])
    >>> abbreviations.variants("TAC craneal")
    [('tomografía axial computarizada craneal', 'TAC', 'tomografía axial computarizada')]
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

from clinlinker.text import fold

MAX_FORMS = 3  # long forms tried per acronym (the most attested first)
_LETTER = "A-ZÁÉÍÓÚÜÑ"
_ACRONYM = re.compile(rf"^[{_LETTER}][{_LETTER}0-9]{{1,5}}s?$")
_DOTTED = re.compile(rf"(?<!\w)((?:[{_LETTER}a-záéíóúüñ]\.){{2,6}})(?!\w)")
_TOKEN = re.compile(r"[\w.]+")
_STOP = {"de", "del", "la", "las", "el", "los", "en", "con", "por", "para", "al", "sin", "y", "o"}
_MAYBE = re.compile(rf"[{_LETTER}][{_LETTER}0-9]|\.")  # a quick test before tokenizing: two capitals, or a dot
_DEFINED = re.compile(rf"\(([{_LETTER}][{_LETTER}0-9]{{1,5}}s?)\)")
# an acronym followed by its long form in parentheses: "PIO (presión intraocular)"
_DEFINED_AFTER = re.compile(rf"(?<![\w.])([{_LETTER}][{_LETTER}0-9]{{1,5}}s?)\s*\(([^()\[\]]{{3,80}})\)")


def may_hold_acronym(text: str) -> bool:
    """A cheap first test (two capitals in a row, or a dot): only such texts can define or be an acronym."""
    return _MAYBE.search(text) is not None


def normalize(token: str) -> str | None:
    """The acronym a token spells ("T.A.C." -> "TAC", "AINEs" -> "AINE"), or None when it reads as a word."""
    plain = token.replace(".", "") if _DOTTED.fullmatch(token) else token
    if _DOTTED.fullmatch(token):
        plain = plain.upper()
    if not _ACRONYM.match(plain) or sum(ch.isupper() for ch in plain) < 2:
        return None
    return plain[:-1] if plain.endswith("s") and len(plain) > 2 else plain


def acronym_tokens(text: str) -> list[tuple[str, str]]:
    """(token as written, acronym) for each acronym of a mention; in a mention written all in capitals (with a
    word of five letters or more) only short tokens that are not stop words count: shouted words are not acronyms."""
    tokens = [t.strip(".") if not _DOTTED.fullmatch(t) else t for t in _TOKEN.findall(text)]
    words = [t for t in tokens if any(ch.isalpha() for ch in t)]
    shouted = len(words) > 1 and any(len(t) >= 5 for t in words) and all(t.replace(".", "").isupper()
                                                                          for t in words)
    out = []
    for token in tokens:
        acronym = normalize(token)
        if acronym and not (shouted and (len(acronym) > 3 or fold(acronym) in _STOP)):
            out.append((token, acronym))
    return out


def long_form(before: str, acronym: str) -> str | None:
    """The long form that the text just before an acronym's parenthesis spells (Schwartz & Hearst, 2003): its
    letters found right to left, the first one starting a word, in at most min(|A| + 5, 2|A|) words.
    ("tomografía axial computarizada", "TAC") -> "tomografía axial computarizada"; ("resección transuretral",
    "RTU") -> "resección transuretral"."""
    words = before.split()
    if not words:
        return None
    window = " ".join(words[-min(len(acronym) + 5, 2 * len(acronym)):])
    text = "".join((fold(ch) or ch)[:1] for ch in window)  # folded char by char: positions stay those of window
    short = fold(acronym)
    s, i = len(short) - 1, len(text) - 1
    while s >= 0:
        ch = short[s]
        if not ch.isalnum():
            s -= 1
            continue
        while i >= 0 and (text[i] != ch or (s == 0 and i > 0 and text[i - 1].isalnum())):
            i -= 1
        if i < 0:
            return None
        i -= 1
        s -= 1
    start = text.rfind(" ", 0, i + 1) + 1
    form = window[start:].strip(" ,;:-")
    return form if len(form) > len(acronym) else None


def definitions(text: str) -> list[tuple[str, str]]:
    """(acronym, long form) that a text defines in parentheses: "resección transuretral (RTU) de la lesión"."""
    return [(acronym, form) for _, acronym, form in _defined_before(text)]


def definitions_after(text: str) -> list[tuple[str, str]]:
    """(acronym, long form) that a text defines the other way round: "la PIO (presión intraocular) era normal". The
    whole parenthesis must be the long form: its letters spell the acronym from its first word on."""
    return [(acronym, form) for _, acronym, form in _defined_after(text)]


def document_forms(text: str | None) -> dict[str, str]:
    """The long form a document gives each acronym it defines, either way round (the first definition wins, as a
    reader takes it): "Se midió la presión intraocular (PIO) ..." -> {"PIO": "presión intraocular"}."""
    if not text or not may_hold_acronym(text):
        return {}
    out: dict[str, str] = {}
    for _, acronym, form in sorted(_defined_before(text) + _defined_after(text)):
        out.setdefault(acronym, form)
    return out


def _defined_before(text: str) -> list[tuple[int, str, str]]:
    out = []
    for match in _DEFINED.finditer(text):
        acronym = normalize(match.group(1))
        if not acronym:
            continue
        form = long_form(re.split(r"[()\[\],;:]", text[:match.start()])[-1], acronym)
        if form:
            out.append((match.start(), acronym, form))
    return out


def _defined_after(text: str) -> list[tuple[int, str, str]]:
    out = []
    for match in _DEFINED_AFTER.finditer(text):
        acronym = normalize(match.group(1))
        inner = " ".join(match.group(2).split()).strip(" ,;:-")
        if acronym and len(inner) > len(acronym) and long_form(inner, acronym) == inner:
            out.append((match.start(), acronym, inner))
    return out


class Abbreviations:
    def __init__(self, forms: dict | None = None):
        self.forms: dict[str, Counter] = {a: Counter(c) for a, c in (forms or {}).items()}

    def __len__(self) -> int:
        return len(self.forms)

    def add(self, acronym: str, form: str, weight: int = 1) -> None:
        form = " ".join(form.split())
        if not form or fold(form) == fold(acronym) or (len(form.split()) == 1 and normalize(form)):
            return
        self.forms.setdefault(acronym, Counter())[form] += weight

    def add_concept_terms(self, acronym: str, concept, weight: int = 1) -> None:
        """An acronym that names a concept: its terms that are not acronyms themselves are its long forms."""
        for term in concept.terms:
            if not (len(term.split()) == 1 and normalize(term)):
                self.add(acronym, term, weight)

    @classmethod
    def from_kb(cls, kb) -> "Abbreviations":
        out = cls()
        for concept in kb.concepts:
            for term in concept.terms:
                if not may_hold_acronym(term):
                    continue
                tokens = acronym_tokens(term)
                if len(tokens) == 1 and len(term.split()) == 1:
                    out.add_concept_terms(tokens[0][1], concept)
                for acronym, form in definitions(term):
                    out.add(acronym, form)
        return out

    def with_links(self, pairs: Iterable[tuple[str, str]], kb=None) -> "Abbreviations":
        """A copy that also knows what accepted links (mention text, code) teach; `kb` resolves codes."""
        out = Abbreviations(self.forms)
        for text, code in pairs:
            tokens = acronym_tokens(text)
            if kb is not None and len(tokens) == 1 and len(text.split()) == 1 and code in kb:
                out.add_concept_terms(tokens[0][1], kb[code], weight=2)
            for acronym, form in definitions(text):
                out.add(acronym, form, weight=2)
        return out

    def variants(self, text: str, limit: int = MAX_FORMS, local: dict | None = None) -> list[tuple[str, str, str]]:
        """(the mention with one acronym spelled out, the acronym, its long form), most attested forms first; an
        acronym the mention itself defines in parentheses is left alone. local: the long forms the mention's
        document defines ({acronym: form}, `document_forms`): tried first, within the same `limit`."""
        defined = set(document_forms(text))
        out = []
        for token, acronym in acronym_tokens(text):
            if acronym in defined:
                continue
            forms = [form for form, _ in sorted(self.forms.get(acronym, {}).items(), key=lambda kv: (-kv[1], kv[0]))]
            if local and acronym in local:
                forms = [local[acronym]] + [f for f in forms if fold(f) != fold(local[acronym])]
            if not forms:
                continue
            pattern = re.compile(rf"(?<!\w){re.escape(token)}(?!\w)")
            for form in forms[:limit]:
                variant = pattern.sub(lambda _: form, text, count=1)
                if variant != text:
                    out.append((" ".join(variant.split()), acronym, form))
        return out

    def describe(self) -> dict:
        return {"acronyms": len(self.forms), "long_forms": sum(len(c) for c in self.forms.values())}
