"""docs/reference.md, written from the code so that it cannot drift: every command and flag (the CLI's own parsers),
every setting of the backend (backend/serving/config.py: each field, its variable, default and comment), every endpoint (the
Flask app's routes and their docstrings).

    python docs/reference.py          # rewrite docs/reference.md
    python docs/reference.py --check  # exit 1 if docs/reference.md is not what the code says
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "reference.md"
HEADER = """# Reference

Every command and flag, every setting and every endpoint of clinlinker, written from the code by
`python docs/reference.py` (a test checks that this page is what the code says). The README is the path through
them; docs/quality.md, docs/benchmarks.md and docs/reliability.md say what they give and cost.
"""


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(action) -> str:
    if action.default in (None, argparse.SUPPRESS) or action.option_strings and action.nargs == 0:
        return ""
    value = action.default
    if isinstance(value, str) and value == os.environ.get("CLINLINKER_MODEL"):
        return ""
    return f"`{value}`" if value != [] else ""


def _flag(action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    metavar = "" if action.nargs == 0 else " " + (action.metavar or action.dest.upper())
    if action.choices and action.nargs != 0:
        metavar = " {" + ",".join(str(c) for c in action.choices) + "}"
    return ", ".join(f"`{option}{metavar}`" for option in action.option_strings)


def _help(action) -> str:
    text = action.help or ""
    if "%(default)s" in text:
        text = text.replace("%(default)s", str(action.default))
    return _cell(text)


def commands() -> list[str]:
    """One section per command (and sub-command), in the order `clinlinker --help` lists them."""
    from clinlinker.cli import build_parser

    env = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("CLINLINKER_")}
    try:
        parser = build_parser()
    finally:
        os.environ.update(env)
    out = ["## Commands", "", "`clinlinker [--log-level LEVEL] COMMAND ...`; `clinlinker COMMAND --help` says the "
           "same.", ""]

    def walk(sub_parser, name, help_text):
        actions = [a for a in sub_parser._actions if not isinstance(a, argparse._HelpAction)]
        nested = [a for a in actions if isinstance(a, argparse._SubParsersAction)]
        out.extend([f"### clinlinker {name}", "", _cell(help_text or sub_parser.description or ""), ""])
        rows = [a for a in actions if not isinstance(a, argparse._SubParsersAction)]
        if rows:
            out.extend(["| argument | default | what it does |", "|---|---|---|"])
            out.extend(f"| {_flag(a)} | {_default(a)} | {_help(a)} |" for a in rows)
            out.append("")
        for group in nested:
            helps = {c.dest: c.help for c in group._choices_actions}
            for child, child_parser in group.choices.items():
                walk(child_parser, f"{name} {child}", helps.get(child))

    [group] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {c.dest: c.help for c in group._choices_actions}
    for name, sub_parser in group.choices.items():
        walk(sub_parser, name, helps.get(name))
    return out


FIELD = re.compile(r"^    (\w+): [^=]+= (.+?)  # ((?:CLINLINKER_|REDIS_)[A-Z_]+)(?::? ?(.*))?$")
# read outside BackendConfig: by `clinlinker serve` (its flags' defaults), the CLI, and the model loader
OTHER = [
    ("CLINLINKER_HOST / _PORT / _WORKERS / _THREADS", "`127.0.0.1` / `9090` / `1` / `4`",
     "`clinlinker serve`'s defaults; a host beyond loopback needs the Basic-auth pair and the picker token"),
    ("CLINLINKER_ALLOW_OPEN", "unset", "`1`: serve beyond loopback without credentials anyway (said in the log)"),
    ("CLINLINKER_LOG_LEVEL", "`INFO`", "log level of the commands and the backend"),
    ("CLINLINKER_ONNX_DIR", "beside the model", "where ONNX exports of models are kept (`--runtime onnx`)"),
    ("HF_HUB_OFFLINE", "unset", "`1` on machines without internet: models load from a directory or the local cache "
                                "at once"),
]


def settings() -> list[str]:
    """The backend's settings: each field of BackendConfig with its variable, default and comment."""
    out = ["## Settings of the backend (environment variables)", "",
           "Read when the app starts (`clinlinker serve`, or gunicorn on `backend.serving.app:serve_app()`); a bad "
           "value stops the start with the variable named. From `backend/serving/config.py`:", "",
           "| variable | default | what it sets |", "|---|---|---|"]
    fields = []
    for line in (ROOT / "backend" / "serving" / "config.py").read_text(encoding="utf-8").splitlines():
        match = FIELD.match(line)
        if match:
            _, default, variable, comment = match.groups()
            try:
                value = ast.literal_eval(default)
            except (ValueError, SyntaxError):
                value = default
            if isinstance(value, str) and value in ("DEFAULT_LABELS",):
                from backend.serving.config import DEFAULT_LABELS

                value = DEFAULT_LABELS
            fields.append([variable, value, comment or ""])
        elif fields and line.startswith("    #   "):
            fields[-1][2] += " " + line[len("    #   "):]
    for variable, value, comment in fields:
        if comment.startswith("="):  # "CLINLINKER_WORKER=0 disables ...": the value, then what it does
            first, _, rest = comment[1:].partition(" ")
            comment = f"`{first.rstrip(':')}`: {rest}"
        if isinstance(value, bool):
            value = "1" if value else "0"
        shown = "unset" if value is None else ("`" + (",".join(value) if isinstance(value, tuple) else str(value))
                                               + "`")
        out.append(f"| `{variable}` | {shown} | {_cell(comment)} |")
    out.extend(f"| `{name}` | {default} | {what} |" for name, default, what in OTHER)
    out.append("")
    return out


def endpoints() -> list[str]:
    """The app's routes (the demo gazetteer's app, no store worker) with each handler's docstring."""
    import inspect
    import tempfile

    from backend.serving.app import create_app
    from backend.serving.config import BackendConfig

    with tempfile.TemporaryDirectory() as data:
        app = create_app(BackendConfig(data_dir=data, worker=False))
        rows = {}
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static":
                continue
            methods = sorted(m for m in rule.methods if m not in ("HEAD", "OPTIONS"))
            key = (rule.endpoint, tuple(methods))
            rows.setdefault(key, []).append(rule.rule)
        callers = {"protocol": "Label Studio (its ML backend protocol)", "picker": "the coder's browser (the picker)",
                   "operations": "operations"}
        out = ["## Endpoints", "", "Grouped by who calls them (`backend/serving/routes/`).", "",
               "| caller | endpoint | what it answers |", "|---|---|---|"]
        for (endpoint, methods), paths in rows.items():
            doc = inspect.getdoc(app.view_functions[endpoint]) or ""
            where = " or ".join(f"`{p}`" for p in sorted(paths))
            caller = callers.get(endpoint.split(".")[0], endpoint.split(".")[0])
            out.append(f"| {caller} | {'/'.join(methods)} {where} | {_cell(doc)} |")
        app.config.get("CLINLINKER_STORE") and app.config["CLINLINKER_STORE"].dispose()
    out.append("")
    return out


def render() -> str:
    return "\n".join([HEADER, *commands(), *settings(), *endpoints()]).rstrip() + "\n"


def main(argv: list[str]) -> int:
    import logging

    logging.disable(logging.WARNING)
    text = render()
    if "--check" in argv:
        if DOC.read_text(encoding="utf-8") != text:
            print("docs/reference.md is not what the code says: run python docs/reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
