"""Options several Label Studio commands share."""

from __future__ import annotations

import argparse
import os


def add_label_studio_server(p: argparse.ArgumentParser) -> None:
    """--url and --token of the Label Studio server a command talks to."""
    p.add_argument("--url", required=True, help="Label Studio URL, e.g. http://localhost:8080")
    p.add_argument("--token", default=os.environ.get("LABEL_STUDIO_API_KEY"),
                   help="Label Studio token (default: $LABEL_STUDIO_API_KEY)")
