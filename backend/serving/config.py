"""Backend configuration, read from environment variables when the app is created (never at import)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from clinlinker.errors import ClinlinkerError

DEFAULT_LABELS = ("ENFERMEDAD", "SINTOMA", "PROCEDIMIENTO")


@dataclass
class BackendConfig:
    """Every knob of the backend; `from_env` documents the variable and default of each (see README)."""

    index_dir: str | None = None  # CLINLINKER_INDEX: the index directory served (unset: the demo gazetteer, lexical)
    model: str | None = None  # CLINLINKER_MODEL: a model id or path to load instead of the index's (checked against it)
    redis_url: str | None = None  # REDIS_URL: Redis for the embeddings and re-ranker scores (unset: in-process; a
    #   cache)
    database_url: str | None = None  # CLINLINKER_DATABASE_URL: a PostgreSQL store of record, e.g.
    #   postgresql+psycopg://u:pw@host/db (unset: SQLite in the data directory)
    cache_prefix: str = "clinlinker:"  # CLINLINKER_REDIS_PREFIX: the prefix of every Redis key
    cache_ttl: int | None = None  # CLINLINKER_CACHE_TTL: seconds an embedding or a score stays in Redis (unset: no
    #   expiry)
    top_k: int = 25  # CLINLINKER_TOP_K: candidates per mention
    labels: tuple[str, ...] = DEFAULT_LABELS  # CLINLINKER_LABELS: span labels that get codes (others pass through)
    routing: str | None = None  # CLINLINKER_ROUTING: which part of the KB serves each label, a TOML file (unset: the
    #   built-in clinlinker/data/label_routing.toml; none: the whole KB)
    reranker: str | None = None  # CLINLINKER_RERANKER: a cross-encoder (id or path) re-ordering the first stage's
    #   candidates (unset: the index's, if any; none: off)
    rerank_depth: int | None = None  # CLINLINKER_RERANK_DEPTH: first-stage candidates it reads (unset: the index's,
    #   else 50)
    runtime: str | None = None  # CLINLINKER_RUNTIME: the dense encoder's runtime: torch (unset) or onnx (the same fp32
    #   model exported once, beside the model or in CLINLINKER_ONNX_DIR; faster on CPUs)
    mentions_field: str = "mentions"  # CLINLINKER_MENTIONS_FIELD: the task-data field listing spans ([{start, end,
    #   label}])
    doc_field: str = "doc_id"  # CLINLINKER_DOC_FIELD: the task-data field naming the document (export, picker URL)
    auth_user: str | None = None  # CLINLINKER_BASIC_AUTH_USER: HTTP Basic auth on every endpoint, with the password
    auth_password: str | None = None  # CLINLINKER_BASIC_AUTH_PASSWORD: HTTP Basic auth's password (both or neither)
    picker_token: str | None = None  # CLINLINKER_PICKER_TOKEN: with auth on, lets the browser's /taxonomy and /search
    #   ?token= through (a browser cannot send Basic auth there)
    cors_origins: tuple[str, ...] = ("http://localhost:8080",)  # CLINLINKER_CORS_ORIGINS: Label Studio origins allowed
    #   to fetch the picker (comma-separated)
    max_body_mb: float = 50.0  # CLINLINKER_MAX_BODY_MB: the largest request body (413 beyond, chunked bodies too)
    max_text_chars: int = 200_000  # CLINLINKER_MAX_TEXT_CHARS: the longest task text
    data_dir: str = "var"  # CLINLINKER_DATA_DIR: the SQLite store of record and fine-tuned models (from the working
    #   directory, made absolute)
    worker: bool = True  # CLINLINKER_WORKER=0 disables the in-process housekeeping (expiry, compaction)
    max_tasks: int = 1000  # CLINLINKER_MAX_TASKS: tasks in one /predict request (413 beyond)
    max_spans: int = 5000  # CLINLINKER_MAX_SPANS: spans in one /predict request (413 beyond)
    max_spans_per_task: int = 2000  # CLINLINKER_MAX_SPANS_PER_TASK: spans of one task (413 beyond)
    candidates_ttl_days: float = 30.0  # CLINLINKER_CANDIDATES_TTL_DAYS: how long the picker's candidate lists are kept
    learn_across_projects: bool = False  # CLINLINKER_LEARN_ACROSS_PROJECTS: one learned layer for every project
    learn_untouched: bool = False  # CLINLINKER_LEARN_UNTOUCHED: learn pre-annotations the coder left untouched too
    retrain_every: int = 0  # CLINLINKER_RETRAIN_EVERY: fine-tune after this many new accepted links (0: only /train)
    train_max_steps: int = 200  # CLINLINKER_TRAIN_MAX_STEPS: steps of one background fine-tuning
    train_max_seconds: float = 1800.0  # CLINLINKER_TRAIN_MAX_SECONDS: seconds of training (then it saves what it has)
    train_timeout: float = 7200.0  # CLINLINKER_TRAIN_TIMEOUT: the whole job (training + re-encoding) is killed after
    train_threads: int = 1  # CLINLINKER_TRAIN_THREADS: CPU threads of the training process (serving keeps the rest)
    train_lr: float = 2e-5  # CLINLINKER_TRAIN_LR: the background fine-tuning's learning rate
    train_reranker: bool = True  # CLINLINKER_TRAIN_RERANKER=0: background training leaves the index's re-ranker as is
    search_memo: int = 10_000  # CLINLINKER_SEARCH_MEMO: wordings whose knowledge-base candidates a process keeps (a
    #   repeat is not searched again; learned terms still apply; 0: off)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, env=None) -> "BackendConfig":
        env = os.environ if env is None else env

        def text(name, default=None):
            value = env.get(name, "").strip()
            return value or default

        def number(name, default, kind=int, minimum=1):
            raw = text(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ClinlinkerError(f"{name}={raw!r}: expected a number") from None
            if value < minimum:
                raise ClinlinkerError(f"{name}={raw!r}: must be at least {minimum}")
            return value

        def items(name, default):
            raw = text(name)
            return default if raw is None else tuple(v.strip() for v in raw.split(",") if v.strip())

        config = cls(
            index_dir=text("CLINLINKER_INDEX"),
            model=text("CLINLINKER_MODEL"),
            redis_url=text("REDIS_URL"),
            database_url=text("CLINLINKER_DATABASE_URL"),
            cache_prefix=text("CLINLINKER_REDIS_PREFIX", "clinlinker:"),
            cache_ttl=number("CLINLINKER_CACHE_TTL", None),
            top_k=number("CLINLINKER_TOP_K", 25),
            labels=items("CLINLINKER_LABELS", DEFAULT_LABELS),
            routing=text("CLINLINKER_ROUTING"),
            reranker=text("CLINLINKER_RERANKER"),
            rerank_depth=number("CLINLINKER_RERANK_DEPTH", None),
            runtime=text("CLINLINKER_RUNTIME"),
            mentions_field=text("CLINLINKER_MENTIONS_FIELD", "mentions"),
            doc_field=text("CLINLINKER_DOC_FIELD", "doc_id"),
            auth_user=text("CLINLINKER_BASIC_AUTH_USER"),
            auth_password=text("CLINLINKER_BASIC_AUTH_PASSWORD"),
            picker_token=text("CLINLINKER_PICKER_TOKEN"),
            cors_origins=items("CLINLINKER_CORS_ORIGINS", ("http://localhost:8080",)),
            max_body_mb=number("CLINLINKER_MAX_BODY_MB", 50.0, float, minimum=0.001),
            max_text_chars=number("CLINLINKER_MAX_TEXT_CHARS", 200_000),
            data_dir=text("CLINLINKER_DATA_DIR", "var"),
            worker=text("CLINLINKER_WORKER", "1") not in ("0", "false", "no"),
            max_tasks=number("CLINLINKER_MAX_TASKS", 1000),
            max_spans=number("CLINLINKER_MAX_SPANS", 5000),
            max_spans_per_task=number("CLINLINKER_MAX_SPANS_PER_TASK", 2000),
            candidates_ttl_days=number("CLINLINKER_CANDIDATES_TTL_DAYS", 30.0, float, minimum=0.001),
            learn_across_projects=text("CLINLINKER_LEARN_ACROSS_PROJECTS", "0").lower() in ("1", "true", "yes"),
            learn_untouched=text("CLINLINKER_LEARN_UNTOUCHED", "0").lower() in ("1", "true", "yes"),
            retrain_every=number("CLINLINKER_RETRAIN_EVERY", 0, minimum=0),
            train_max_steps=number("CLINLINKER_TRAIN_MAX_STEPS", 200),
            train_max_seconds=number("CLINLINKER_TRAIN_MAX_SECONDS", 1800.0, float),
            train_timeout=number("CLINLINKER_TRAIN_TIMEOUT", 7200.0, float),
            train_threads=number("CLINLINKER_TRAIN_THREADS", 1),
            train_lr=number("CLINLINKER_TRAIN_LR", 2e-5, float, minimum=0),
            train_reranker=text("CLINLINKER_TRAIN_RERANKER", "1").lower() not in ("0", "false", "no"),
            search_memo=number("CLINLINKER_SEARCH_MEMO", 10_000, minimum=0),
        )
        if config.runtime not in (None, "torch", "onnx"):
            raise ClinlinkerError(f"CLINLINKER_RUNTIME={config.runtime!r}: expected torch or onnx")
        if bool(config.auth_user) != bool(config.auth_password):
            raise ClinlinkerError("set both CLINLINKER_BASIC_AUTH_USER and CLINLINKER_BASIC_AUTH_PASSWORD, or neither")
        return config

    @property
    def data_path(self) -> Path:
        """The data directory, absolute (a relative CLINLINKER_DATA_DIR is taken from the working directory)."""
        path = Path(self.data_dir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
