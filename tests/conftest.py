import contextlib
import logging
import os
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
REDIS_URL = os.environ.get("CLINLINKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def demo_gazetteer() -> Path:
    return DEMO_GAZETTEER


@pytest.fixture(scope="session")
def demo_hierarchy() -> Path:
    return DEMO_HIERARCHY


@pytest.fixture(scope="session")
def demo_kb():
    from clinlinker.gazetteer import load_knowledge_base

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
    from clinlinker.encoders import DenseEncoder

    return DenseEncoder(str(tiny_model_dir), pooling="cls", max_length=64, batch_size=8)


@pytest.fixture(scope="session")
def dense_index(demo_kb, tiny_encoder):
    from clinlinker.index import build_index

    return build_index(demo_kb, tiny_encoder)


@pytest.fixture(scope="session")
def lexical_index(demo_kb):
    from clinlinker.index import build_index

    return build_index(demo_kb)


@pytest.fixture
def redis_url():
    """The real local Redis (db 15), flushed before each test. `.ci/run` makes sure it runs."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not answering ({exc}); start it (`.ci/run` does) or set "
                    "CLINLINKER_TEST_REDIS_URL")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "gazetteers").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _quiet_logs(caplog):
    caplog.set_level(logging.INFO)


POSTGRES_URL = os.environ.get("CLINLINKER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def postgres_database():
    """A fresh database on the real local PostgreSQL, dropped afterwards. `.ci/run` makes sure one runs."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"clinlinker_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not answering ({str(exc).splitlines()[0]}); start it "
                    "(`.ci/run` does) or set CLINLINKER_TEST_POSTGRES_URL")
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url():
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """Each store test runs on both stores of record: SQLite (None: the data directory's file) and PostgreSQL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")
