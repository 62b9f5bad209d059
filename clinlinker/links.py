"""Mention-to-concept links in the shared-task TSV format:
`filename  mark  label  off0  off1  span  code  semantic_rel`.

`code` may be composite (`A+B`) or `NO_CODE`; both are kept as they are.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TextIO

from clinlinker.errors import ClinlinkerError, InputFileError
from clinlinker.tsv import read_tsv

LINK_COLUMNS = ("filename", "mark", "label", "off0", "off1", "span", "code", "semantic_rel")
NO_CODE = "NO_CODE"


@dataclass(frozen=True)
class Link:
    filename: str
    mark: str
    label: str
    start: int
    end: int
    span: str
    code: str
    semantic_rel: str = ""
    line: int | None = None  # where it was read from, for messages

    @property
    def is_no_code(self) -> bool:
        return self.code == NO_CODE

    @property
    def is_composite(self) -> bool:
        return "+" in self.code

    @property
    def is_clean(self) -> bool:
        """Counted in the "cleaned" evaluation set (the published numbers use it)."""
        return not self.is_no_code and not self.is_composite

    def row(self) -> list[str]:
        return [self.filename, self.mark, self.label, str(self.start), str(self.end), self.span, self.code,
                self.semantic_rel]


def is_link_file(path) -> bool:
    """True when the file starts with the linking TSV header."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    except OSError:
        return False
    header = [c.strip().lstrip("\ufeff") for c in first.split("\t")]
    return all(c in header for c in ("filename", "span", "code"))


def read_links(path, *, require_code: bool = True) -> list[Link]:
    """Read a linking TSV, checking offsets and codes; errors name the file and line."""
    required = LINK_COLUMNS if require_code else tuple(c for c in LINK_COLUMNS if c not in ("code", "semantic_rel"))
    _, rows = read_tsv(path, required)
    links = []
    for lineno, row in rows:
        try:
            start, end = int(row["off0"]), int(row["off1"])
        except ValueError:
            raise InputFileError(path, lineno, f"off0/off1 must be integers, got {row['off0']!r}/{row['off1']!r}") \
                from None
        if start < 0 or end < start:
            raise InputFileError(path, lineno, f"bad offsets {start}-{end}: need 0 <= off0 <= off1")
        span = row["span"]
        if not span.strip():
            raise InputFileError(path, lineno, "empty span")
        code = row.get("code", "").strip()
        if require_code and not code:
            raise InputFileError(path, lineno, "empty code (use NO_CODE for a mention without a code)")
        links.append(Link(filename=row["filename"].strip(), mark=row["mark"].strip(), label=row["label"].strip(),
                          start=start, end=end, span=span, code=code,
                          semantic_rel=row.get("semantic_rel", "").strip(), line=lineno))
    return links


def read_documents(links: Iterable[Link], folder) -> list[str]:
    """Each link's document, read once per file from FOLDER/FILENAME.txt (the shared tasks' layout); one that cannot
    be read is named with the line of the link that wants it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ClinlinkerError(f"{folder}: no such folder of documents")
    texts: dict[str, str] = {}
    out = []
    for link in links:
        if link.filename not in texts:
            path = folder / f"{link.filename}.txt"
            try:
                texts[link.filename] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                where = f" (line {link.line})" if link.line else ""
                raise ClinlinkerError(f"{folder}: cannot read {path.name} for the link of {link.filename}{where}: "
                                      f"{exc.strerror if isinstance(exc, OSError) else exc}") from None
        out.append(texts[link.filename])
    return out


def write_links(links: Iterable[Link], out: str | Path | TextIO | None = None) -> None:
    """Write links with the header; `out` is a path, an open text file, or None for stdout."""
    if out is None or isinstance(out, (str, Path)):
        handle = sys.stdout if out is None else open(out, "w", encoding="utf-8", newline="")
        close = out is not None
    else:
        handle, close = out, False
    try:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar=None,
                            quotechar=None)
        writer.writerow(LINK_COLUMNS)
        for link in links:
            writer.writerow([field.replace("\t", " ").replace("\n", " ") for field in link.row()])
    finally:
        if close:
            handle.close()
