import contextlib
import logging
import os
import subprocess
from pathlib import Path

import pytest

# Tests never reach a model hub: the tiny models are built locally. Set before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
DEMO_GAZETTEER = ROOT / "clinlinker" / "data" / "demo_gazetteer.tsv"
DEMO_HIERARCHY = ROOT / "clinlinker" / "data" / "demo_hierarchy.tsv"
SHARED_DATA = Path(os.environ.get("CLINLINKER_SHARED_DATA", ROOT.parent / "shared" / "data"))
# A Redis or PostgreSQL given here is used as it is; otherwise the session starts throwaway servers of its own
# (tests/servers.py), so the suite never depends on, nor touches, a service of the machine.
GIVEN_REDIS_URL = os.environ.get("CLINLINKER_TEST_REDIS_URL")
GIVEN_POSTGRES_URL = os.environ.get("CLINLINKER_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def demo_gazetteer() -> Path:
    return DEMO_GAZETTEER


@pytest.fixture(scope="session")
def demo_hierarchy() -> Path:
    return DEMO_HIERARCHY


@pytest.fixture(scope="session")
def demo_kb():
    from clinlinker.kb.gazetteer import load_knowledge_base

    return load_knowledge_base([DEMO_GAZETTEER], DEMO_HIERARCHY)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, demo_kb) -> Path:
    from tests.tiny_model import build_tiny_roberta

    return build_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"), demo_kb.term_texts)


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory, tiny_model_dir):
    """The tiny RoBERTa with a fixed one-logit classification head (saved, so every load scores the same)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-cross-encoder")
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=1)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    from clinlinker.encode.encoders import DenseEncoder

    return DenseEncoder(str(tiny_model_dir), pooling="cls", max_length=64, batch_size=8)


@pytest.fixture(scope="session")
def dense_index(demo_kb, tiny_encoder):
    from clinlinker.search.index import build_index

    return build_index(demo_kb, tiny_encoder)


@pytest.fixture(scope="session")
def lexical_index(demo_kb):
    from clinlinker.search.index import build_index

    return build_index(demo_kb)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """The URL of the session's Redis: CLINLINKER_TEST_REDIS_URL, or a throwaway redis-server (db 15)."""
    if GIVEN_REDIS_URL:
        SERVICES_USED["redis"] = GIVEN_REDIS_URL
        yield GIVEN_REDIS_URL
        return
    from tests.servers import OwnRedis

    server = OwnRedis(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start a throwaway Redis: {exc}")
    SERVICES_USED["redis"] = server.binary
    yield server.url.rsplit("/", 1)[0] + "/15"
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis, flushed before and after each test."""
    import redis

    client = redis.Redis.from_url(redis_server, socket_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis at {redis_server} is not answering ({exc}); unset CLINLINKER_TEST_REDIS_URL to let "
                    "the tests start their own")
    client.flushdb()
    yield redis_server
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of the session's PostgreSQL server: CLINLINKER_TEST_POSTGRES_URL, or a throwaway one."""
    if GIVEN_POSTGRES_URL:
        SERVICES_USED["postgresql"] = GIVEN_POSTGRES_URL
        yield GIVEN_POSTGRES_URL
        return
    from tests.servers import OwnPostgres

    try:
        server = OwnPostgres().start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"could not start a throwaway PostgreSQL: {exc} {getattr(exc, 'stderr', '') or ''}")
    SERVICES_USED["postgresql"] = str(server.bin)
    yield server.url
    server.stop()


@contextlib.contextmanager
def postgres_database(server_url: str):
    """A fresh database on the session's PostgreSQL server, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"clinlinker_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        pytest.fail(f"PostgreSQL at {server_url} is not answering ({str(exc).splitlines()[0]})")
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_server):
    with postgres_database(postgres_server) as url:
        yield url


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "gazetteers").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _quiet_logs(caplog):
    caplog.set_level(logging.INFO)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """Each store test runs on both stores of record: SQLite (None: the data directory's file) and PostgreSQL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


# --- which tests used the real servers; with CLINLINKER_REQUIRE_SERVICES=1 (.ci/run) a skipped one fails the run ---
SERVICE_FIXTURES = {"redis": {"redis_server", "redis_url"},
                    "postgresql": {"postgres_server", "postgres_url", "database_url"}}
SERVICES_USED: dict[str, str] = {}
_SERVICE_OUTCOMES = {kind: {"passed": 0, "failed": 0, "skipped": 0} for kind in SERVICE_FIXTURES}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.when == "call" or report.outcome != "passed":  # one outcome per test: its call, or what stopped it
        used = set(getattr(item, "fixturenames", ()))
        if "database_url" in used and getattr(item, "callspec", None) and \
                item.callspec.params.get("database_url") == "sqlite":
            used.discard("database_url")
        for kind, names in SERVICE_FIXTURES.items():
            if names & used:
                _SERVICE_OUTCOMES[kind][report.outcome] += 1


def pytest_terminal_summary(terminalreporter):
    for kind, outcome in _SERVICE_OUTCOMES.items():
        if sum(outcome.values()):
            terminalreporter.write_line(
                f"{kind} tests: {outcome['passed']} passed, {outcome['failed']} failed, {outcome['skipped']} skipped "
                f"(server: {SERVICES_USED.get(kind, 'none started')})")


def pytest_sessionfinish(session):
    if os.environ.get("CLINLINKER_REQUIRE_SERVICES") != "1":
        return
    bad = [kind for kind, outcome in _SERVICE_OUTCOMES.items() if outcome["skipped"] or not outcome["passed"]]
    if bad:
        print(f"\nCLINLINKER_REQUIRE_SERVICES=1: {' and '.join(bad)} tests were skipped, or none ran")
        session.exitstatus = 1
