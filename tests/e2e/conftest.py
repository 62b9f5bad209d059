"""A real Label Studio 1.23 and a real clinlinker backend (gunicorn), on free local ports.

Label Studio lives in its own virtual environment (`.ci/run` installs it in .venv-ls);
point CLINLINKER_LS_BIN elsewhere if needed. Without it these tests skip, unless
CLINLINKER_REQUIRE_E2E=1 (as in CI), where its absence is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LS_BIN = Path(os.environ.get("CLINLINKER_LS_BIN", ROOT / ".venv-ls" / "bin" / "label-studio"))
TOKEN = "0123456789abcdef0123456789abcdef01234567"
USER, PASSWORD = "coder@example.com", "clinlinker-e2e"
CORPUS = ROOT / "tests" / "fixtures" / "corpus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url} died (exit {proc.returncode}); log:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer in {timeout} s; log:\n{log.read_text()[-3000:]}")


class Api:
    """Tiny JSON client for Label Studio's REST API or the backend."""

    def __init__(self, base: str, token: str | None = None):
        self.base = base.rstrip("/")
        self.token = token

    def __call__(self, method: str, path: str, body=None, timeout: float = 120):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    if not LS_BIN.exists():
        message = f"Label Studio not installed at {LS_BIN} (.ci/run installs label-studio==1.23.2 there)"
        if os.environ.get("CLINLINKER_REQUIRE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("USERNAME", "PASSWORD")}
    env.update(LABEL_STUDIO_USERNAME=USER, LABEL_STUDIO_PASSWORD=PASSWORD, LABEL_STUDIO_USER_TOKEN=TOKEN,
               LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true", USE_DEFAULT_BANNED_SUBNETS="false",
               COLLECT_ANALYTICS="false", LABEL_STUDIO_BASE_DATA_DIR=str(data))
    log = data / "label-studio.log"
    proc = subprocess.Popen([str(LS_BIN), "start", "--no-browser", "--host", "localhost", "--port", str(port),
                             "--data-dir", str(data)], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        wait_http(url + "/health", proc, log, timeout=240)
        yield {"url": url, "api": Api(url, TOKEN), "log": log}
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def lexical_index_dir(tmp_path_factory):
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.search.index import build_index, save_index

    from tests.conftest import DEMO_GAZETTEER, DEMO_HIERARCHY

    out = tmp_path_factory.mktemp("e2e-index") / "ix"
    return save_index(build_index(load_knowledge_base([DEMO_GAZETTEER], DEMO_HIERARCHY)), out)


@pytest.fixture(scope="session")
def backend(label_studio, lexical_index_dir, tmp_path_factory, redis_server):
    """`clinlinker serve` under gunicorn, with real Redis, allowing Label Studio's origin."""
    data = tmp_path_factory.mktemp("backend")
    port = free_port()
    env = {**os.environ, "CLINLINKER_INDEX": str(lexical_index_dir), "CLINLINKER_DATA_DIR": str(data),
           "REDIS_URL": redis_server.rsplit("/", 1)[0] + "/14", "CLINLINKER_REDIS_PREFIX": f"e2e{port}:",
           "CLINLINKER_CORS_ORIGINS": label_studio["url"], "PYTHONPATH": str(ROOT)}
    log = data / "backend.log"
    clinlinker = shutil.which("clinlinker", path=os.path.dirname(sys.executable)) or "clinlinker"
    proc = subprocess.Popen([clinlinker, "serve", "--host", "127.0.0.1", "--port", str(port), "--threads", "8"],
                            env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT)
    # Label Studio must reach the backend by the same host name the browser uses.
    url = f"http://localhost:{port}"
    try:
        wait_http(url + "/health", proc, log, timeout=120)
        yield {"url": url, "api": Api(url), "log": log}
    finally:
        stop(proc)
