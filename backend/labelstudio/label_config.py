"""What the backend needs from a Label Studio labeling config: the names of the controls it fills.

A region is several result items sharing one id: the span `Labels` item plus one item per
per-region control (`Taxonomy` with the candidates, `TextArea` for a typed code, `Choices`
for the semantic relation).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache

from clinlinker.errors import ClinlinkerError

SEMANTIC_RELATIONS = ("EXACT", "NARROW", "BROAD", "COMPOSITE")


class LabelConfigError(ClinlinkerError):
    pass


@dataclass(frozen=True)
class LabelConfig:
    text_name: str = "text"
    text_field: str = "text"
    labels_name: str = "label"
    labels: tuple[str, ...] = ()
    taxonomy_name: str | None = "snomed"
    textarea_name: str | None = "code"
    relation_name: str | None = "semantic_rel"
    doc_param: str | None = "doc_id"  # the task-data field in the Taxonomy apiUrl (?doc=$doc_id)


DEFAULT_CONFIG = LabelConfig(labels=("ENFERMEDAD", "SINTOMA", "PROCEDIMIENTO"))


@lru_cache(maxsize=64)
def parse_label_config(xml: str | None, wanted_labels: tuple[str, ...] = ()) -> LabelConfig:
    """Find the Text, Labels, Taxonomy, TextArea and relation Choices controls; defaults when xml is empty."""
    if not xml or not xml.strip():
        return DEFAULT_CONFIG
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelConfigError(f"label_config is not valid XML: {exc}") from None
    texts = [e for e in root.iter("Text") if e.get("name")]
    labels_tags = [e for e in root.iter("Labels") if e.get("name")]
    if not texts or not labels_tags:
        raise LabelConfigError("label_config needs a <Text name=... value=\"$field\"> and a <Labels> control "
                               "for the mention spans (see label_studio_config/)")

    def label_values(tag):
        return tuple(lab.get("value") for lab in tag.iter("Label") if lab.get("value"))

    labels_tag = next((t for t in labels_tags if set(label_values(t)) & set(wanted_labels)), labels_tags[0])
    to_name = labels_tag.get("toName")
    text = next((t for t in texts if t.get("name") == to_name), texts[0])
    value = text.get("value", "$text")
    text_field = value[1:] if value.startswith("$") else "text"

    def per_region(tag_name):
        return [e for e in root.iter(tag_name) if e.get("name") and e.get("perRegion", "").lower() == "true"
                and (e.get("toName") in (None, text.get("name")))]

    taxonomies = per_region("Taxonomy")
    textareas = per_region("TextArea")
    relation = next((c for c in per_region("Choices")
                     if {ch.get("value") for ch in c.iter("Choice")} & set(SEMANTIC_RELATIONS)), None)
    doc_param = None
    if taxonomies and taxonomies[0].get("apiUrl"):
        match = re.search(r"\$([A-Za-z_][A-Za-z0-9_]*)", taxonomies[0].get("apiUrl"))
        doc_param = match.group(1) if match else None
    return LabelConfig(text_name=text.get("name"), text_field=text_field, labels_name=labels_tag.get("name"),
                       labels=label_values(labels_tag),
                       taxonomy_name=taxonomies[0].get("name") if taxonomies else None,
                       textarea_name=textareas[0].get("name") if textareas else None,
                       relation_name=relation.get("name") if relation is not None else None,
                       doc_param=doc_param)
