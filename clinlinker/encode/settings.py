"""What a model directory records about how it is meant to be used: `clinlinker_encoder.json` beside the weights.

Its pooling (cls or mean) and the prefix put before every text (e5's "query: "), and where the weights came from
(a package and version, "dequantized from 4-bit Q4_0", the base a fine-tuned model came from). Written by
`clinlinker model unpack` and `clinlinker train`; the dense encoder takes its pooling and prefix from it unless told
otherwise, and an index records both, so that `index`, `train`, `link` and the backend apply them alike.
"""

from __future__ import annotations

import json
from pathlib import Path

from clinlinker.errors import ClinlinkerError

SETTINGS = "clinlinker_encoder.json"


def write_settings(directory, *, pooling: str, prefix: str, source: dict, licence: str | None = None) -> None:
    directory = Path(directory)
    settings = {"pooling": pooling, "prefix": prefix, "source": source}
    (directory / SETTINGS).write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if licence:
        (directory / "NOTICE").write_text(licence + "\n", encoding="utf-8")


def read_settings(name: str) -> dict:
    """The recorded pooling, prefix and provenance of a local model directory ({} for a hub id or none recorded)."""
    path = Path(name) / SETTINGS
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClinlinkerError(f"{path}: unreadable ({exc}); delete it or unpack the model again") from None
    if not isinstance(settings, dict):
        raise ClinlinkerError(f"{path}: expected a JSON object")
    return settings


def encoding_of(model: str, pooling: str | None = None, prefix: str | None = None) -> tuple[str, str, dict | None]:
    """(pooling, prefix, source) a model is encoded with: what is asked, else what its directory records, else CLS
    pooling and no prefix (the default model's card). The encoder and the trainer both decide it here."""
    settings = read_settings(str(model))
    return (pooling or settings.get("pooling") or "cls", settings.get("prefix", "") if prefix is None else prefix,
            settings.get("source"))
