"""The commands that know Label Studio, registered into the `clinlinker` command (entry point
`clinlinker.commands` in pyproject.toml): annotate, serve, export, curate, sync, doctor, ls-project."""

from backend.commands import annotate, curate, doctor, export, ls_project, serve, sync


def register(sub) -> None:
    for group in (annotate, serve, export, curate, sync, doctor, ls_project):
        group.register(sub)
