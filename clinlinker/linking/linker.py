"""The linker: mentions (and their labels) in, up to k distinct candidate concepts out, whatever engine serves."""

from __future__ import annotations

from typing import Sequence

from clinlinker.search.candidates import Candidate
from clinlinker.errors import ClinlinkerError
from clinlinker.search.index import DEFAULT_TOP_K, load_index
from clinlinker.search.memo import DEFAULT_SIZE, SearchMemo
from clinlinker.kb.routing import NO_ROUTING, LabelRouting
from clinlinker.linking.abbreviations import acronym_tokens, document_forms, may_hold_acronym

HIERARCHY_FILL_FROM = 5  # the hits whose parents, children and siblings may complete a short list
ABBREVIATIONS = True  # default: acronyms searched also as their long forms (docs/quality.md, "As served")


class Linker:
    """Wraps a loaded index (dense, lexical or hybrid) with input checks, a default k and label routing.

    >>> linker = Linker.from_directory("ix", routing=LabelRouting.default())
    >>> linker.link(["apendicectomía laparoscópica"], labels=["PROCEDIMIENTO"])[0][0].code
    '6025007'

    A list holds only concepts with evidence: similarity (lexical, dense, learned) or, when similarity finds
    fewer than k in the label's part, the hierarchy neighbours (parents, children, siblings) of the hits, marked
    `evidence="hierarchy"`. When even those run out the list is shorter than k.
    """

    def __init__(self, index, *, top_k: int = DEFAULT_TOP_K, learned=None, routing: LabelRouting | None = None,
                 hierarchy_fill: bool = True, reranker=None, abbreviations: bool = ABBREVIATIONS,
                 memo: int = DEFAULT_SIZE):
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        self.index = index
        self.reranker = reranker  # a CrossEncoderReranker: re-orders the first stage's `depth` candidates
        self.top_k = top_k
        self.learned = learned  # a LearnedTerms layer (accepted wordings), searched beside the index
        self.routing = routing or NO_ROUTING
        self.hierarchy_fill = hierarchy_fill
        self.abbreviations = abbreviations  # search a mention's acronyms also as their long forms
        self._masks = self.routing.masks(index.kb)
        self.memo = SearchMemo(memo)  # the index's lists of wordings searched before (memo.py)
        self._kb_abbreviations = None  # built on first use: the knowledge base's acronyms
        self._learned_abbreviations = (None, None, None)  # (learned layer, its acronym_version, Abbreviations)

    def learn(self, links) -> "Linker":
        """Make (mention text, code) pairs synonyms of their concepts; replaces what was learned before."""
        from clinlinker.linking.learned import LearnedTerms

        if self.learned is None:
            self.learned = LearnedTerms(self.index.kb, self.index.term_encoder)
        self.learned.replace(links)
        return self

    @classmethod
    def from_directory(cls, directory, *, model: str | None = None, redis_url: str | None = None,
                       cache=None, top_k: int = DEFAULT_TOP_K, routing: LabelRouting | None = None,
                       reranker=..., rerank_depth: int | None = None, rerank_cache=None,
                       abbreviations: bool | None = None, memo: int = DEFAULT_SIZE, **kwargs) -> "Linker":
        """reranker: a cross-encoder's hub id or path (or a manifest's record of one); None or "none": no
        re-ranking; default: the one the index manifest records (`clinlinker index --reranker`), if any.
        rerank_depth: the first-stage candidates it reads (N >= k). rerank_cache: where its scores are kept
        (default: Redis under clinlinker:rr: with redis_url, else an in-process LRU). abbreviations: search acronyms
        also as their long forms (default: what the manifest's `serving` records, else on)."""
        if cache is None and redis_url:
            from clinlinker.encode.cache import RedisCache

            cache = RedisCache(redis_url)
        index = load_index(directory, model=model, cache=cache, **kwargs)
        if reranker is ...:
            spec = dict((getattr(index, "manifest", None) or {}).get("reranker") or {})
        elif isinstance(reranker, dict):  # a manifest's record
            spec = dict(reranker)
        else:
            spec = {"model": reranker} if reranker and reranker != "none" else {}
        stage = None
        if spec.get("model"):
            from clinlinker.encode.cache import make_cache
            from clinlinker.rerank.cross_encoder import CrossEncoderReranker

            try:
                stage = CrossEncoderReranker(spec["model"], depth=rerank_depth or spec.get("depth") or 50,
                                             term=spec.get("term", "matched"), max_length=spec.get("max_length", 64),
                                             device=kwargs.get("device"), precision=spec.get("precision", "fp32"),
                                             weight=float(spec.get("weight", 1.0)),
                                             novel_weight=spec.get("novel_weight"),
                                             cache=rerank_cache if rerank_cache is not None else
                                             make_cache(redis_url, prefix="clinlinker:rr:"))
            except ValueError as exc:  # a manifest edited by hand, int8 on a GPU host
                raise ClinlinkerError(f"{directory}: the re-ranker {spec['model']}: {exc}") from None
            if spec.get("fingerprint") and spec["fingerprint"] != stage.fingerprint:
                import logging

                logging.getLogger(__name__).warning(
                    "the re-ranker %s is not the model the index %s recorded (fingerprint %s, now %s)", spec["model"],
                    directory, spec["fingerprint"][:12], stage.fingerprint[:12])
        if abbreviations is None:
            abbreviations = bool(((getattr(index, "manifest", None) or {}).get("serving") or {})
                                 .get("abbreviations", ABBREVIATIONS))
        return cls(index, top_k=top_k, routing=routing, reranker=stage, abbreviations=abbreviations,
                   memo=memo)

    @property
    def kb(self):
        return self.index.kb

    def allowed(self, label: str | None):
        """The mask of the label's part of the knowledge base; None: the whole of it."""
        return self._masks.get(label) if label else None

    def link(self, mentions: Sequence[str], k: int | None = None,
             labels: Sequence[str | None] | None = None, learned=...,
             contexts: Sequence[str | None] | None = None) -> list[list[Candidate]]:
        """Candidates for each mention, best first: at most k distinct codes each, from the label's part of the
        knowledge base when `labels` (one per mention, None for none) names a routed label.

        learned: the learned-terms layer to search beside the index (e.g. one project's); default, the linker's own.
        contexts: one per mention, the text of the document it was read from (None: unknown): the acronyms that
        document defines ("presión intraocular (PIO)") are spelled out as it defines them, first.
        """
        learned = self.learned if learned is ... else learned
        k = self.top_k if k is None else k
        if k < 1:
            raise ClinlinkerError(f"k must be at least 1, got {k}")
        if labels is not None and len(labels) != len(mentions):
            raise ClinlinkerError(f"{len(mentions)} mentions but {len(labels)} labels")
        if contexts is not None and len(contexts) != len(mentions):
            raise ClinlinkerError(f"{len(mentions)} mentions but {len(contexts)} contexts")
        forms_of: dict = {}  # a document's own acronym definitions, read once per document
        cleaned = []
        for i, mention in enumerate(mentions):
            if not isinstance(mention, str):
                raise ClinlinkerError(f"mention {i + 1} is a {type(mention).__name__}, not text")
            text = " ".join(mention.split())
            if not text:
                raise ClinlinkerError(f"mention {i + 1} is empty")
            label = labels[i] if labels is not None else None
            local = ()
            if self.abbreviations and contexts is not None and contexts[i] and may_hold_acronym(text):
                context = contexts[i]
                if not isinstance(context, str):
                    raise ClinlinkerError(f"context {i + 1} is a {type(context).__name__}, not text")
                if context not in forms_of:
                    forms_of[context] = document_forms(context)
                forms = forms_of[context]
                local = tuple(dict.fromkeys((a, forms[a]) for _, a in acronym_tokens(text) if a in forms))
            cleaned.append((text, label if label in self._masks else None, local))
        if not cleaned:
            return []
        unique = list(dict.fromkeys(cleaned))
        found: dict = {}
        depth = max(k, self.reranker.depth) if self.reranker is not None else k  # what the first stage retrieves
        expand = self.abbreviations_for(learned) if self.abbreviations else None
        for label in dict.fromkeys(label for _, label, _ in unique):
            keys = [key for key in unique if key[1] == label]
            group = [text for text, _, _ in keys]
            allowed = self.allowed(label)
            if expand is not None and (len(expand) or any(local for _, _, local in keys)):
                results = self._search_expanded(group, [dict(local) for _, _, local in keys], expand, depth,
                                                label, allowed)
            else:
                results = self.memo.search(self.index, group, depth, label, allowed)
            if learned is not None and len(learned):
                results = learned.merge(group, results, depth, allowed=allowed)
            if self.reranker is not None:
                results = self.reranker.rerank(group, results, k)
            if self.hierarchy_fill and self.kb.has_hierarchy:
                results = [self._fill(cands, k, allowed) for cands in results]
            found.update(zip(keys, results))
        return [found[key] for key in cleaned]

    def abbreviations_for(self, learned=None):
        """The acronyms and long forms known to the knowledge base and, when given, a learned-terms layer's
        accepted links (rebuilt when what was learned changes)."""
        from clinlinker.linking.abbreviations import Abbreviations

        if self._kb_abbreviations is None:
            self._kb_abbreviations = Abbreviations.from_kb(self.kb)
        if learned is None or not len(learned):
            return self._kb_abbreviations
        layer, version, built = self._learned_abbreviations
        # rebuilt only when the acronym-bearing accepted wordings change; the layer itself is held, not its id(),
        # which a new layer may reuse once an old one is freed
        if layer is not learned or version != learned.acronym_version:
            version = learned.acronym_version
            built = self._kb_abbreviations.with_links(learned.acronym_pairs(), self.kb)
            self._learned_abbreviations = (learned, version, built)
        return built

    def _search_expanded(self, group: list[str], local: list[dict], expand, depth: int, label,
                         allowed) -> list[list[Candidate]]:
        """Search each mention and, where it holds known acronyms, its spelled-out variants; a concept keeps its
        best similarity (the mention's own on a tie), marked with the expansion that found it. local[i]: the long
        forms mention i's document defines (tried first)."""
        from dataclasses import replace

        variants = [expand.variants(text, local=forms) for text, forms in zip(group, local)]
        searched = dict.fromkeys(group)
        extra = list(dict.fromkeys(v for found in variants for v, _, _ in found if v not in searched))
        texts = list(searched) + extra
        by_text = dict(zip(texts, self.memo.search(self.index, texts, depth, label, allowed)))
        out = []
        for text, found in zip(group, variants):
            if not found:
                out.append(by_text[text])
                continue
            best = {c.code: (c.score, 0, c.rank, c) for c in by_text[text]}
            for order, (variant, acronym, form) in enumerate(found, start=1):
                for c in by_text[variant]:
                    if c.code not in best or c.score > best[c.code][0]:
                        best[c.code] = (c.score, order, c.rank, replace(c, via=f"{acronym} = {form}"))
            ranked = sorted(best.values(), key=lambda e: (-e[0], e[1], e[2], e[3].code))[:depth]
            out.append([entry[3].at_rank(rank) for rank, entry in enumerate(ranked, start=1)])
        return out

    def _fill(self, candidates: list[Candidate], k: int, allowed) -> list[Candidate]:
        """Fewer than k similar concepts: add the hierarchy neighbours of the hits, best hit first."""
        if len(candidates) >= k or not candidates:
            return candidates
        kb = self.kb
        taken = {c.code for c in candidates}
        out = list(candidates)
        for hit in candidates[:HIERARCHY_FILL_FROM]:
            neighbours = [(p, "parent") for p in kb.parents(hit.code)]
            neighbours += [(c, "child") for c in kb.children(hit.code)]
            neighbours += [(s, "sibling") for p in kb.parents(hit.code) for s in kb.children(p) if s != hit.code]
            for code, relation in neighbours:
                concept = kb.get(code)
                if code in taken or concept is None or (allowed is not None and not allowed[kb.index_of(code)]):
                    continue
                taken.add(code)
                out.append(Candidate.of(kb, concept, matched_term=concept.preferred_term, score=0.0, rank=len(out) + 1,
                                        evidence="hierarchy", via=f"{relation} of {hit.code}"))
                if len(out) >= k:
                    return out
        return out

    def describe(self) -> dict:
        out = {**self.index.describe(), "top_k": self.top_k,
               "routing": {**self.routing.describe(),
                           "concepts_per_label": {label: int(mask.sum()) for label, mask in self._masks.items()}}}
        if self.learned is not None:
            out["learned"] = self.learned.describe()
        if self.reranker is not None:
            out["reranker"] = self.reranker.describe()
        out["abbreviations"] = self.abbreviations
        out["memo"] = self.memo.describe()
        return out
