"""Judging the candidates: top-k accuracy against gold links, agreement between coders, and the faster precisions
judged by accuracy."""

from clinlinker.evaluate.agreement import agreement
from clinlinker.evaluate.metrics import evaluate_links, format_report

__all__ = ["agreement", "evaluate_links", "format_report"]
