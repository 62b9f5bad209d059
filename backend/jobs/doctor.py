"""`clinlinker doctor`: check an installation and say what to fix.

Each check prints one line, `ok`, `warn` or `FAIL`, with what it found; the command ends with the short list of
what to fix and exits 1 when any check failed. Checks: Python and the pinned packages; the index (manifest, which
model built it, sizes) and its model (loaded, fingerprint checked by the index loader); Redis and the store of
record (reachable, latency, version); Label Studio (reachable with the token, the project's labeling config as
this backend reads it, the webhook and the ML backend connection); memory against the sizing rule of the README.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

PINNED = {"torch": "2.13.0"}
PACKAGES = ("torch", "transformers", "tokenizers", "faiss-cpu", "numpy", "flask", "gunicorn", "redis", "sqlalchemy",
            "psycopg", "prometheus-client")
MB_PER_100K_TERMS = {"flat": 300, "ivf": 300, "hnsw": 330, "sq8": 75}  # README, Performance and sizing
MODEL_MB_PER_PROCESS = 500


@dataclass
class Report:
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (status, check, detail)
    fixes: list[str] = field(default_factory=list)

    def ok(self, check: str, detail: str) -> None:
        self.lines.append(("ok", check, detail))

    def warn(self, check: str, detail: str) -> None:
        self.lines.append(("warn", check, detail))

    def fail(self, check: str, detail: str, fix: str) -> None:
        self.lines.append(("FAIL", check, detail))
        self.fixes.append(f"{check}: {fix}")

    @property
    def failed(self) -> bool:
        return bool(self.fixes)

    def render(self) -> str:
        width = max((len(check) for _, check, _ in self.lines), default=10)
        out = [f"{status:<4}  {check:<{width}}  {detail}" for status, check, detail in self.lines]
        if self.fixes:
            out += ["", f"{len(self.fixes)} thing(s) to fix:"] + [f"  - {fix}" for fix in self.fixes]
        else:
            out += ["", "nothing to fix"]
        return "\n".join(out)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def check_python(report: Report) -> None:
    version = platform.python_version()
    if sys.version_info < (3, 11):
        report.fail("python", version, "use Python 3.11 or newer")
    else:
        report.ok("python", f"{version} ({sys.executable})")
    found, missing = [], []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        report.fail("packages", f"missing: {', '.join(missing)}", "pip install -r requirements.txt")
    else:
        report.ok("packages", ", ".join(found))
    for name, pinned in PINNED.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if installed.split("+")[0] != pinned:
            report.fail(name, f"{installed} installed", f"clinlinker requires {name}=={pinned} (requirements.txt)")


def check_index(report: Report, index_dir: str | None, model: str | None) -> dict:
    """Load the index as the backend would (its model too: the loader checks the fingerprint)."""
    if not index_dir:
        report.warn("index", "CLINLINKER_INDEX unset: the backend serves the DEMO gazetteer (lexical), not yours")
        return {}
    from clinlinker.errors import ClinlinkerError
    from clinlinker.search.index import load_index

    path = Path(index_dir)
    if not path.is_dir():
        report.fail("index", f"{index_dir}: no such directory", "build one with `clinlinker index ... --out DIR`")
        return {}
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    started = time.perf_counter()
    try:
        index = load_index(str(path), model=model)
    except (ClinlinkerError, OSError, ValueError) as exc:
        report.fail("index", f"{index_dir}: {_first_line(exc)}", "rebuild the index or pass the model it was built "
                    "with (--model / CLINLINKER_MODEL)")
        return {}
    describe = index.describe()
    manifest = getattr(index, "manifest", {}) or {}
    report.ok("index", f"{index_dir}: {describe['engine']} engine, {describe.get('index_type') or 'flat'}, "
                       f"{describe['concepts']} concepts, {describe['terms']} terms, {size / 2 ** 20:.0f} MB on disk, "
                       f"built {manifest.get('created', '?')}")
    report.ok("model", f"{describe['model']} (loaded in {time.perf_counter() - started:.1f} s; fingerprint "
                       f"{str(manifest.get('fingerprint', '?'))[:12]} matches the index)")
    return describe


def check_redis(report: Report, url: str | None) -> None:
    if not url:
        report.ok("redis", "REDIS_URL unset: an in-process embedding cache (Redis is optional)")
        return
    import redis

    from clinlinker.encode.cache import _redact

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        started = time.perf_counter()
        client.ping()
        latency = (time.perf_counter() - started) * 1000
        version = client.info("server").get("redis_version", "?")
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        report.fail("redis", f"{_redact(url)}: {_first_line(exc)}", "start Redis or unset REDIS_URL (it is only a "
                    "cache: the backend runs without it, slower)")
        return
    report.ok("redis", f"{_redact(url)}: Redis {version}, ping {latency:.1f} ms")


def check_store(report: Report, database_url: str | None, data_dir: str) -> None:
    from sqlalchemy import text

    from backend.records.store import Store

    try:
        started = time.perf_counter()
        store = Store(database_url, data_dir)
        with store.engine.connect() as conn:
            version = conn.execute(text("SELECT sqlite_version()" if store.kind == "sqlite" else "SELECT version()"
                                        )).scalar()
        latency = (time.perf_counter() - started) * 1000
        facts = store.describe()
        store.dispose()
    except Exception as exc:  # noqa: BLE001
        from clinlinker.encode.cache import _redact

        where = _redact(database_url) if database_url else data_dir
        report.fail("store", f"{where}: {_first_line(exc)}", "check CLINLINKER_DATABASE_URL (PostgreSQL reachable, "
                    "user and database exist) or CLINLINKER_DATA_DIR (writable)")
        return
    report.ok("store", f"{facts['kind']} at {facts['location']} ({str(version).split(' on ')[0]}; opened in "
                       f"{latency:.0f} ms): {facts['annotations']} annotations, {facts['accepted_links']} accepted "
                       f"links, {facts['candidate_lists']} candidate lists")


def check_label_studio(report: Report, url: str | None, token: str | None, project: int | None,
                       backend_url: str | None, labels) -> None:
    if not url:
        report.warn("label studio", "no --ls-url: Label Studio not checked")
        return
    from backend.labelstudio.label_config import LabelConfigError, parse_label_config
    from backend.labelstudio.api import LabelStudio, LabelStudioError

    base = url.rstrip("/")
    if not token:
        report.fail("label studio", f"{base}: no token", "pass --ls-token or set LABEL_STUDIO_API_KEY")
        return
    ls = LabelStudio(url, token, timeout=10)
    try:
        version = ls.version()  # answers without a token
        release = version.get("release") or (version.get("label-studio-os-package") or {}).get("version", "?")
        user = ls.whoami()  # needs a valid token
        report.ok("label studio", f"{base}: Label Studio {release}, token of {user.get('email') or user.get('id')}")
    except LabelStudioError as exc:
        if exc.status is None:
            report.fail("label studio", f"{base}: {_first_line(exc)}", "start Label Studio or fix --ls-url")
        else:
            report.fail("label studio", f"{base}: HTTP {exc.status}", "check the token (Account & Settings → Access "
                        "Token)" if exc.status in (401, 403) else "check the URL")
        return
    if project is None:
        return
    try:
        config = ls.project(project).get("label_config", "")
        hooks = ls.webhooks(project)
        backends = ls.get("/api/ml", project=int(project)) or []
    except LabelStudioError as exc:
        report.fail("project", f"{project}: {_first_line(exc)}", "check the project id")
        return
    try:
        parsed = parse_label_config(config, tuple(labels))
        report.ok("labeling config", f"project {project}: text {parsed.text_name}, labels {parsed.labels_name}, "
                                     f"picker {parsed.taxonomy_name or parsed.textarea_name or 'none'}")
    except LabelConfigError as exc:
        report.fail("labeling config", f"project {project}: {exc}", "use a config of label_studio_config/ "
                    "(clinlinker ls-project writes one)")
    wanted = (backend_url or "").rstrip("/")
    hook_urls = [h.get("url", "") for h in hooks if isinstance(h, dict)]
    if any(u.rstrip("/").endswith("/webhook") and (not wanted or u.startswith(wanted)) for u in hook_urls):
        report.ok("webhook", f"project {project}: {', '.join(hook_urls)}")
    else:
        report.fail("webhook", f"project {project}: none to {wanted or 'a backend'}/webhook",
                    "connect the backend in Settings → Model (Label Studio then adds the webhook)")
    ml_urls = [b.get("url", "") for b in backends if isinstance(b, dict)]
    if ml_urls:
        report.ok("ml backend", f"project {project}: {', '.join(ml_urls)}")
    else:
        report.fail("ml backend", f"project {project}: no model connected", "Settings → Model → Connect model")


def check_memory(report: Report, describe: dict, workers: int) -> None:
    try:
        available = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemAvailable"))
    except (OSError, StopIteration, ValueError):
        report.warn("memory", "cannot read /proc/meminfo")
        return
    available_mb = available / 1024
    terms = describe.get("terms", 0)
    per_100k = MB_PER_100K_TERMS.get(describe.get("index_type") or "flat", 300)
    model = MODEL_MB_PER_PROCESS if describe.get("engine") not in (None, "lexical") else 0
    need = workers * (terms / 100_000 * per_100k + model)
    detail = (f"{available_mb:,.0f} MB available; the sizing rule asks ~{need:,.0f} MB for {workers} worker(s) "
              f"({terms} terms, {describe.get('index_type') or 'flat'} index{', a model each' if model else ''})")
    if need > available_mb:
        report.fail("memory", detail, "fewer --workers, an sq8 or hnsw index, or a larger machine")
    else:
        report.ok("memory", detail)


def run_doctor(*, index_dir=None, model=None, redis_url=None, database_url=None, data_dir="var", ls_url=None,
               ls_token=None, project=None, backend_url=None, workers: int = 1, labels=None) -> Report:
    from backend.serving.config import DEFAULT_LABELS

    report = Report()
    check_python(report)
    describe = check_index(report, index_dir, model)
    check_redis(report, redis_url)
    check_store(report, database_url, data_dir)
    check_label_studio(report, ls_url, ls_token, project, backend_url, labels or DEFAULT_LABELS)
    check_memory(report, describe or {"terms": 0, "engine": "lexical"}, workers)
    if os.environ.get("HF_HUB_OFFLINE") != "1" and describe.get("engine") not in (None, "lexical"):
        report.warn("offline", "HF_HUB_OFFLINE is not 1: on a machine without internet set it (models load from "
                               "the local cache or a directory)")
    return report
