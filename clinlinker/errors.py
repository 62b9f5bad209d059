"""Errors a user can cause. Each message says what was wrong, where, and how to fix it."""

from __future__ import annotations


class ClinlinkerError(Exception):
    """Base class: the CLI prints these as one line, never as a traceback."""


class InputFileError(ClinlinkerError):
    """A gazetteer, hierarchy or linking file is malformed."""

    def __init__(self, path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ModelLoadError(ClinlinkerError):
    """A model id or directory could not be loaded."""


class IndexLoadError(ClinlinkerError):
    """An index directory is missing, corrupt, or was built for another encoder."""


class IndexMismatchError(IndexLoadError):
    """The index was built with a different encoder than the one in use."""
