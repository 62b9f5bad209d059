"""What a request carries, read so that nothing a client sends can become a 500 or an unstorable fact.

Not JSON, nested deeper than MAX_JSON_DEPTH (counted before parsing, so a deep body costs nothing), not UTF-8, a body
over CLINLINKER_MAX_BODY_MB even when chunked, or text no store can keep (a lone surrogate, a NUL): each is a
PayloadError that names what is wrong and where (`tasks[0].data.text`). Label Studio's project field, read the same
way by every route.
"""

from __future__ import annotations

import json
import re

from backend.serving.model import PayloadError

MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string, escaped quotes included
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def read_json_body(req) -> dict:
    """The request's JSON object, or a PayloadError that says what is wrong with it (never a 500): not JSON,
    nested deeper than MAX_JSON_DEPTH, or text that is not Unicode (a lone surrogate such as \\ud800)."""
    raw = req.get_data(cache=True)  # a body over CLINLINKER_MAX_BODY_MB with a Content-Length raises 413 here
    limit = req.max_content_length
    if req.content_length is None and limit is not None and len(raw) >= limit:
        # a chunked body is cut at the limit by the stream, not refused: refuse it here, whole
        from werkzeug.exceptions import RequestEntityTooLarge

        raise RequestEntityTooLarge()
    if not raw.strip():
        raise PayloadError("request body must be a JSON object (Content-Type: application/json)")
    depth = _nesting(raw)
    if depth > MAX_JSON_DEPTH:
        raise PayloadError(f"request body nested {depth} levels deep (at most {MAX_JSON_DEPTH})")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise PayloadError("request body is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"request body must be a JSON object: not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise PayloadError("request body must be a JSON object (Content-Type: application/json)")
    if b"\\u" in raw:  # only an escape can spell a lone surrogate or a NUL inside JSON text
        found = _unstorable(data, "")
        if found is not None:
            where, what = found
            raise PayloadError(f"{where or 'body'}: {what}")
    return data


def _nesting(raw: bytes) -> int:
    """How deep the JSON text nests arrays and objects (brackets inside strings not counted), stopping early."""
    # Drop string contents first (escaped quotes included), then count the brackets left.
    depth = deepest = 0
    for char in _JSON_STRING.sub(b'""', raw).translate(None, delete=_NOT_BRACKETS):
        if char in (91, 123):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        else:
            depth -= 1
    return deepest


def _unstorable(value, where: str) -> tuple[str, str] | None:
    """(path, what) of the first text no store can keep: a lone surrogate (not Unicode: no UTF-8 carries it) or a
    NUL character (PostgreSQL's text refuses it); None when there is none."""
    if isinstance(value, str):
        if "\x00" in value:
            return where, "text with a NUL character (\\u0000), which no clinical text holds"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where, "text with an unpaired surrogate (\\ud800-\\udfff): not Unicode text"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key).encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")
            here = f"{where}.{name}" if where else name  # the message itself must be storable text
            found = _unstorable(key, here) if isinstance(key, str) else None
            found = found if found is not None else _unstorable(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _unstorable(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def project_of(value) -> str | None:
    """Label Studio's project field ("3.1795651414": id and creation time) -> "3"; a PayloadError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PayloadError("project: expected Label Studio's project id")
    text = str(value).split(".", 1)[0].strip()
    if not re.fullmatch(r"[\w-]{1,64}", text):
        raise PayloadError("project: expected Label Studio's project id")
    return text
