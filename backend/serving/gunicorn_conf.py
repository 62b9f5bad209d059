"""gunicorn's settings for `clinlinker serve` (passed as `--config python:backend.serving.gunicorn_conf`).

The master imports the backend's modules once before it forks the workers, so each worker starts with them imported
and only builds its app (loads the index, opens the store): importing them costs seconds of CPU (SciPy,
SQLAlchemy, Flask), paid once instead of once per worker, which is what a restart under load waits for. Nothing is
made at import time (no connection, thread or model), so nothing is shared across the fork."""


def on_starting(server):  # noqa: ARG001 - gunicorn's hook signature
    import backend.serving.app  # noqa: F401
    import clinlinker.linking.linker  # noqa: F401
    import clinlinker.search.index  # noqa: F401
    import mmh3  # noqa: F401 - the lexical engine's, imported where it is first used
