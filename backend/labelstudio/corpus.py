"""Reading a corpus to pre-annotate, streaming: Label Studio tasks (a JSON array, read in chunks, or JSONL) or a
linking / spans TSV with the texts it points into. Each task comes with where it was read (file and line), for
errors that say where."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from clinlinker.errors import ClinlinkerError, InputFileError


def read_corpus(paths: list[str], texts: str | None = None, doc_field: str = "doc_id",
                mentions_field: str = "mentions") -> Iterator[tuple[str, dict]]:
    """(where, task) for every task of the inputs, in order, streaming. `where` names file and line (or index)."""
    for path in paths:
        suffix = Path(path).suffix.lower()
        if suffix == ".jsonl":
            yield from _read_jsonl(path)
        elif suffix == ".json":
            yield from read_json_array(path)
        elif suffix in (".tsv", ".txt"):
            if not texts:
                raise ClinlinkerError(f"{path}: a TSV of spans needs --texts DIR (the documents its filename column "
                                      "names)")
            yield from _read_spans_tsv(path, texts, doc_field, mentions_field)
        else:
            raise ClinlinkerError(f"{path}: unknown input kind {suffix!r}; expected Label Studio tasks (.json, "
                                  ".jsonl) or a linking/spans TSV (.tsv) with --texts")


def _task(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise InputFileError(where, None, f"expected a task object, got {type(value).__name__}")
    return value if isinstance(value.get("data"), dict) else {"data": value}  # Label Studio imports bare data too


def _read_jsonl(path) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFileError(path, lineno, f"not JSON: {exc.msg} (column {exc.colno})") from None
            yield f"{path}:{lineno}", _task(value, f"{path}:{lineno}")


def read_json_array(path, chunk: int = 1 << 20) -> Iterator[tuple[str, dict]]:
    """The items of a top-level JSON array, one at a time (a Label Studio export can be gigabytes)."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as handle:
        buffer, offset, index, started, line = "", 0, 0, False, 1

        def fill() -> bool:
            nonlocal buffer, offset, line
            more = handle.read(chunk)
            line += buffer.count("\n", 0, offset)
            buffer = buffer[offset:] + more
            offset = 0
            return bool(more)

        fill()
        while True:
            while offset < len(buffer) and buffer[offset] in " \t\r\n,":
                if buffer[offset] == "," and not started:
                    raise InputFileError(path, line + buffer.count("\n", 0, offset), "unexpected ','")
                offset += 1
            if offset >= len(buffer):
                if not fill():
                    raise InputFileError(path, line, "the JSON array is not closed (file truncated?)")
                continue
            char = buffer[offset]
            if not started:
                if char != "[":
                    raise InputFileError(path, line, "expected a JSON array of Label Studio tasks ([{...}, ...])")
                started, offset = True, offset + 1
                continue
            if char == "]":
                return
            try:
                value, end = decoder.raw_decode(buffer, offset)
            except json.JSONDecodeError as exc:
                if fill():
                    continue
                where = line + buffer.count("\n", 0, exc.pos)
                raise InputFileError(path, where, f"not JSON: {exc.msg}") from None
            if end == len(buffer) and fill():  # a number or literal cut at the buffer's end: decode it again
                continue
            where = f"{path}: tasks[{index}] (line {line + buffer.count(chr(10), 0, offset)})"
            yield where, _task(value, where)
            index += 1
            offset = end


def _read_spans_tsv(path, texts: str, doc_field: str, mentions_field: str) -> Iterator[tuple[str, dict]]:
    """A linking TSV (filename mark label off0 off1 span [code semantic_rel]) or a spans TSV (filename label off0
    off1 [span]): consecutive rows of one filename make one task, its text read from texts/<filename>.txt."""
    from clinlinker.tsv import read_tsv

    _, rows = read_tsv(path, ("filename", "label", "off0", "off1"))
    current, mentions, first_line = None, [], 0
    number = 0

    def task():
        file = Path(texts) / f"{current}.txt"
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputFileError(path, first_line, f"cannot read the text of {current!r} ({file}): "
                                                   f"{exc.strerror or exc}") from None
        return f"{path}:{first_line}", {"id": number, "data": {"text": text, doc_field: current,
                                                                mentions_field: mentions}}

    for lineno, row in rows:
        name = row["filename"].strip()
        try:
            start, end = int(row["off0"]), int(row["off1"])
        except ValueError:
            raise InputFileError(path, lineno, f"off0/off1 must be integers, got {row['off0']!r}/{row['off1']!r}") \
                from None
        if name != current:
            if current is not None:
                number += 1
                yield task()
            current, mentions, first_line = name, [], lineno
        mention = {"start": start, "end": end, "label": row["label"].strip()}
        if row.get("span"):
            mention["text"] = row["span"]
        if row.get("mark"):
            mention["id"] = f"{name}-{row['mark'].strip()}"
        mentions.append(mention)
    if current is not None:
        number += 1
        yield task()
