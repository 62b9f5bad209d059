import json
from pathlib import Path

import pytest

from backend.serving.app import create_app
from backend.serving.loading import load_model
from backend.serving.config import BackendConfig

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "label_studio"


def capture(name: str) -> dict:
    """A request body captured from a real Label Studio 1.23.2 (see shared/reference)."""
    data = json.loads((CAPTURES / name).read_text(encoding="utf-8"))
    return data.get("body", data)


@pytest.fixture
def config(tmp_path):
    return BackendConfig(data_dir=str(tmp_path / "var"), worker=False,
                         cors_origins=("http://localhost:8080",))


@pytest.fixture
def app(config):
    model, info = load_model(config)
    app = create_app(config, model, info)
    app.testing = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


TEXT = "Paciente con fiebre y dolor abdominal tras apendicectomía laparoscópica."


def task(task_id=1, doc="d1", mentions=None, text=TEXT, **extra):
    if mentions is None:
        mentions = [{"start": 13, "end": 19, "label": "SINTOMA"},
                    {"start": 22, "end": 37, "label": "SINTOMA"},
                    {"start": 43, "end": 71, "label": "PROCEDIMIENTO"}]
    return {"id": task_id, "data": {"text": text, "doc_id": doc, "mentions": mentions}, **extra}
