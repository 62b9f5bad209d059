"""Strict reading of the tab-separated files of the shared tasks.

Every row comes with its 1-based line number so that errors can point at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from clinlinker.errors import InputFileError


def read_tsv(path, required: Sequence[str]) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """Open a headed TSV file and check that every `required` column is present.

    Returns the header and an iterator of (line_number, row) where row maps column
    names to values. Blank lines are skipped; a line with the wrong number of fields,
    or bytes that are not UTF-8, raise InputFileError naming the file and line.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputFileError(path, None, f"cannot open: {exc.strerror or exc}") from None
    lines = decoded_lines(path, handle)
    try:
        lineno, header_line = next(lines)
    except StopIteration:
        handle.close()
        raise InputFileError(path, None, "file is empty; expected a header line with columns "
                             + ", ".join(required)) from None
    header = [name.strip().lstrip("\ufeff") for name in header_line.split("\t")]
    missing = [name for name in required if name not in header]
    if missing:
        handle.close()
        raise InputFileError(
            path, lineno,
            f"missing column(s) {', '.join(missing)} in header {header!r}; expected tab-separated "
            f"columns {', '.join(required)}")

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        with handle:
            for number, line in lines:
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) != len(header):
                    raise InputFileError(
                        path, number,
                        f"expected {len(header)} tab-separated fields ({', '.join(header)}), "
                        f"found {len(fields)}")
                yield number, dict(zip(header, fields))

    return header, rows()


def decoded_lines(path: Path, handle) -> Iterator[tuple[int, str]]:
    """(line number, text without its line end) of a file opened in binary; bytes that are not UTF-8 raise
    InputFileError with the file, line and column (shared by the TSV, RF2 and UMLS readers)."""
    for number, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputFileError(
                path, number,
                f"not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                "re-save the file as UTF-8") from None
        yield number, text.rstrip("\r\n")
