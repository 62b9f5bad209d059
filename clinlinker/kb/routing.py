"""Label routing: each span label is served from the part of the knowledge base that fits it.

A `LabelRouting` says, per label (ENFERMEDAD, SINTOMA, PROCEDIMIENTO ...), which semantic tags and/or hierarchy
roots make a concept a candidate; `masks(kb)` turns that into one boolean mask over the concepts per label, which
every index applies while it searches (so a label still gets k candidates from its own part, never fewer than it
could). Read from one TOML file (`clinlinker/data/label_routing.toml` is the default, with its reasons).

    >>> routing = LabelRouting.load("label_routing.toml")
    >>> linker = Linker(index, routing=routing)
    >>> linker.link(["fiebre"], labels=["SINTOMA"])
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clinlinker.errors import ClinlinkerError
from clinlinker.text import fold

DEFAULT_ROUTING_FILE = Path(__file__).parents[1] / "data" / "label_routing.toml"
UNTAGGED_POLICIES = ("allow", "deny")


class RoutingError(ClinlinkerError):
    """A label routing file is malformed."""


@dataclass(frozen=True)
class LabelPart:
    label: str
    tags: tuple[str, ...] = ()  # as written in the file
    roots: tuple[str, ...] = ()  # concepts whose descendants (and themselves) fit the label
    untagged: str | None = None  # this label's own policy for concepts without any tag (None: the file's)

    @property
    def folded_tags(self) -> frozenset[str]:
        return frozenset(fold(t) for t in self.tags)


@dataclass(frozen=True)
class LabelRouting:
    parts: dict[str, LabelPart] = field(default_factory=dict)
    inherit: bool = True  # an untagged concept takes its nearest tagged ancestors' tags
    untagged: str = "allow"  # what a concept with no tag at all (own or inherited) gets
    source: str = "(built in)"

    @classmethod
    def default(cls) -> "LabelRouting":
        return cls.load(DEFAULT_ROUTING_FILE)

    @classmethod
    def load(cls, path) -> "LabelRouting":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RoutingError(f"{path}: no such label routing file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise RoutingError(f"{path}: not a valid TOML file ({exc})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "(given)") -> "LabelRouting":
        unknown = set(data) - {"labels", "untagged"}
        if unknown:
            raise RoutingError(f"{source}: unknown section(s) {sorted(unknown)}; expected [untagged] and "
                               "[labels.NAME]")
        untagged = data.get("untagged", {})
        if not isinstance(untagged, dict):
            raise RoutingError(f"{source}: [untagged] must be a table")
        policy = untagged.get("policy", "allow")
        if policy not in UNTAGGED_POLICIES:
            raise RoutingError(f"{source}: untagged.policy must be one of {UNTAGGED_POLICIES}, got {policy!r}")
        inherit = untagged.get("inherit", True)
        if not isinstance(inherit, bool):
            raise RoutingError(f"{source}: untagged.inherit must be true or false, got {inherit!r}")
        labels = data.get("labels", {})
        if not isinstance(labels, dict):
            raise RoutingError(f"{source}: [labels] must hold one table per label, e.g. [labels.SINTOMA]")
        parts = {}
        for label, spec in labels.items():
            if not isinstance(spec, dict):
                raise RoutingError(f"{source}: labels.{label} must be a table with tags and/or roots")
            extra = set(spec) - {"tags", "roots", "untagged"}
            if extra:
                raise RoutingError(f"{source}: labels.{label}: unknown key(s) {sorted(extra)}; expected tags, roots, "
                                   "untagged")
            own_policy = spec.get("untagged")
            if own_policy is not None and own_policy not in UNTAGGED_POLICIES:
                raise RoutingError(f"{source}: labels.{label}.untagged must be one of {UNTAGGED_POLICIES}, "
                                   f"got {own_policy!r}")
            values = {}
            for key in ("tags", "roots"):
                value = spec.get(key, [])
                if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                    raise RoutingError(f"{source}: labels.{label}.{key} must be a list of non-empty strings")
                values[key] = tuple(v.strip() for v in value)
            if not values["tags"] and not values["roots"]:
                raise RoutingError(f"{source}: labels.{label} names neither tags nor roots; remove it to serve that "
                                   "label from the whole knowledge base")
            parts[label] = LabelPart(label, values["tags"], values["roots"], own_policy)
        return cls(parts=parts, inherit=inherit, untagged=policy, source=source)

    def masks(self, kb) -> dict[str, np.ndarray]:
        """One boolean mask over kb.concepts per configured label."""
        effective = self.effective_tags(kb)
        untagged = np.array([not tags for tags in effective], dtype=bool)
        out = {}
        for label, part in self.parts.items():
            wanted = part.folded_tags
            mask = np.array([bool(tags & wanted) for tags in effective], dtype=bool)
            if (part.untagged or self.untagged) == "allow":
                mask |= untagged
            if part.roots:
                roots = set(part.roots)
                for i, concept in enumerate(kb.concepts):
                    if not mask[i] and (concept.code in roots or kb.ancestors(concept.code) & roots):
                        mask[i] = True
            out[label] = mask
        return out

    def effective_tags(self, kb) -> list[frozenset[str]]:
        """Each concept's folded tags: its own, else (with inherit) its nearest tagged ancestors'."""
        out = []
        for concept in kb.concepts:
            tags = concept.semantic_tags
            if not tags and self.inherit:
                tags = kb.inherited_tags(concept.code)
            out.append(frozenset(fold(t) for t in tags))
        return out

    def describe(self) -> dict:
        return {"source": self.source, "inherit": self.inherit, "untagged": self.untagged,
                "labels": {label: {"tags": list(p.tags), "roots": list(p.roots), "untagged": p.untagged or self.untagged}
                           for label, p in self.parts.items()}}


NO_ROUTING = LabelRouting(source="(none: every label searches the whole knowledge base)")


def routing_from_setting(value: str | None) -> LabelRouting:
    """A setting (CLI option or environment variable): unset/'default' -> the built-in file, 'none' -> no routing,
    anything else -> a TOML file path."""
    if value is None or value.strip() in ("", "default"):
        return LabelRouting.default()
    if value.strip().lower() == "none":
        return NO_ROUTING
    return LabelRouting.load(value.strip())
