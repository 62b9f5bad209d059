"""The `clinlinker` command: a thin entry that builds one parser from command groups, one module each.

The library's groups are here (kb, index, train, link). Front ends register theirs through the entry-point group
`clinlinker.commands` (pyproject.toml): backend/commands adds the Label Studio ones (annotate, serve, export, curate,
sync, doctor, ls-project), so nothing in clinlinker/ imports backend/. A group is a module with
`register(subparsers)`, whose parsers set `handler`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import entry_points

from clinlinker import __version__
from clinlinker.errors import ClinlinkerError

GROUPS = ("clinlinker.cli.kb", "clinlinker.cli.model", "clinlinker.cli.index", "clinlinker.cli.train",
          "clinlinker.cli.link")
ENTRY_POINT_GROUP = "clinlinker.commands"


def _registrars():
    import importlib

    for name in GROUPS:
        yield importlib.import_module(name).register
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        yield entry.load()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinlinker", description=(
        "SNOMED CT candidate generation for Spanish clinical mentions "
        "(bi-encoder + Faiss, or the offline char-ngrams engine)."))
    parser.add_argument("--version", action="version", version=f"clinlinker {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("CLINLINKER_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for register in _registrars():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        return args.handler(args)
    except ClinlinkerError as exc:
        print(f"clinlinker {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
