"""What can be checked of the install story without a container engine: the Dockerfile, .ci/run, the requirements
and the README say the same thing."""

import json
import re

import pytest

from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
REQUIREMENTS = (ROOT / "requirements.txt").read_text(encoding="utf-8")
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def test_torch_is_pinned_exactly_everywhere():
    assert re.search(r"^torch==2\.13\.0$", REQUIREMENTS, re.M)
    assert '"torch==2.13.0"' in PYPROJECT
    assert not re.search(r"^torch(?!==2\.13\.0$)", REQUIREMENTS, re.M)


def test_the_docker_image_installs_as_ci_does_and_is_cpu_by_default():
    assert re.search(r"^FROM python:3\.11-slim$", DOCKERFILE, re.M) and "python3.11 -m venv" in CI
    assert "pip install -q -r requirements.txt" in CI
    install = re.search(r"^RUN (.*?pip install[^\n]*)$", DOCKERFILE, re.M | re.S).group(1)
    assert "pip install --no-cache-dir -r requirements.txt" in install
    assert 'export PIP_EXTRA_INDEX_URL="${TORCH_INDEX}"' in install
    assert f"ARG TORCH_INDEX={CPU_INDEX}" in DOCKERFILE
    assert "--build-arg TORCH_INDEX=" in DOCKERFILE  # how to build the GPU image


def test_readme_and_requirements_tell_cpu_users_the_truth():
    for text in (README, REQUIREMENTS):
        assert f"PIP_EXTRA_INDEX_URL={CPU_INDEX} pip install -r requirements.txt" in text
        assert "CUDA" in text
    assert "any other spec pulls" not in REQUIREMENTS  # the old, wrong explanation


def test_the_image_serves_beyond_loopback_only_with_credentials_said():
    assert 'CMD ["clinlinker", "serve", "--host", "0.0.0.0"]' in DOCKERFILE
    for name in ("CLINLINKER_BASIC_AUTH_USER", "CLINLINKER_BASIC_AUTH_PASSWORD", "CLINLINKER_PICKER_TOKEN"):
        assert name in DOCKERFILE and name in README


def test_the_compose_file_wires_every_part_to_the_backends_settings():
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"label-studio", "backend", "redis", "postgres"}
    backend = services["backend"]
    assert backend["build"] == "." and backend["ports"] == ["9090:9090"] and "EXPOSE 9090" in DOCKERFILE
    settings = (ROOT / "backend" / "serving" / "config.py").read_text(encoding="utf-8")
    known = set(re.findall(r'"(CLINLINKER_[A-Z_]+)"', settings))
    env = backend["environment"]
    for name in env:
        if name.startswith("CLINLINKER_"):
            assert name in known, f"{name} is not a backend setting"
            # named whole in the reference of settings (docs/reference.md, generated from backend/serving/config.py)
            assert re.search(rf"`{name}`", REFERENCE), f"{name} not in docs/reference.md"
    assert env["CLINLINKER_DATA_DIR"] == "/data" and "CLINLINKER_DATA_DIR=/data" in DOCKERFILE
    assert any(v.startswith("backend:/data") for v in backend["volumes"])
    assert env["REDIS_URL"].startswith("redis://redis:") and "redis" in backend["depends_on"]
    for secret in ("CLINLINKER_BASIC_AUTH_USER", "CLINLINKER_BASIC_AUTH_PASSWORD", "CLINLINKER_PICKER_TOKEN"):
        assert env[secret].startswith(f"${{{secret}:?"), f"{secret} must be required, never defaulted"
    studio = services["label-studio"]
    version = re.search(r"label-studio==([\d.]+)", CI).group(1)
    assert studio["image"] == f"heartexlabs/label-studio:{version}"  # the version the end-to-end tests drive
    assert studio["environment"]["USE_DEFAULT_BANNED_SUBNETS"] == "false"
    assert studio["environment"]["POSTGRE_HOST"] == "postgres" and studio["environment"]["DJANGO_DB"] == "default"
    assert env["CLINLINKER_CORS_ORIGINS"] == studio["environment"]["LABEL_STUDIO_HOST"]
    # every variable the file reads is in .env.example
    used = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text(encoding="utf-8")))
    example = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(encoding="utf-8"), re.M))
    assert used <= example, used - example
    assert all("healthcheck" in services[name] for name in ("backend", "redis", "postgres"))
    # the backend's store of record: its own database on the same PostgreSQL server, created at its first start
    from sqlalchemy.engine import make_url

    url = make_url(env["CLINLINKER_DATABASE_URL"].replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}", "pw"))
    assert url.get_backend_name() == "postgresql" and url.host == "postgres" and url.username == \
        services["postgres"]["environment"]["POSTGRES_USER"]
    init = [v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert init and f"CREATE DATABASE {url.database};" in (ROOT / init[0].split(":")[0]).read_text()
    assert "postgres" in backend["depends_on"]


def test_installs_are_quiet():
    """No editable install in the install command nor in CI: each of setuptools' editable modes prints a warning."""
    assert not re.search(r"^-e\s", REQUIREMENTS, re.M)
    assert re.search(r"^\.\[test,ray,multilingual\]$", REQUIREMENTS, re.M)
    assert "pip install -q -e" not in CI and "pip install -e" not in DOCKERFILE
    assert "--no-install-recommends chromium" in CI


def _declared() -> tuple[set[str], set[str]]:
    """The distributions pyproject.toml declares: (dependencies, optional dependencies), normalised names."""
    import tomllib

    project = tomllib.loads(PYPROJECT)["project"]

    def names(specs):
        return {re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs}

    return names(project["dependencies"]), names(s for extra in project["optional-dependencies"].values()
                                                   for s in extra)


def _imports(folder: str) -> dict[str, bool]:
    """Top-level module -> imported at module level somewhere (else only inside functions), for folder's sources."""
    import ast

    found: dict[str, bool] = {}
    for path in (ROOT / folder).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                name = module.split(".")[0]
                found[name] = found.get(name, False) or id(node) in top
    return found


def test_pyproject_declares_every_package_the_code_imports():
    """`pip install .` alone must give a working `clinlinker serve` and commands: whatever clinlinker/ and backend/
    import is a declared dependency (an optional extra only for what is imported inside the function that needs
    it, e.g. ray)."""
    import sys
    from importlib.metadata import packages_distributions

    required, optional = _declared()
    dists = packages_distributions()
    own = {"clinlinker", "backend", "label_studio_config"}
    for folder in ("clinlinker", "backend"):
        for module, at_top in sorted(_imports(folder).items()):
            if module in sys.stdlib_module_names or module in own:
                continue
            names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
            assert names & (required | optional), f"{folder}/ imports {module} ({names}), not in pyproject.toml"
            if at_top:
                assert names & required, f"{folder}/ imports {module} at module level: it must be a dependency"


def test_requirements_install_the_package_and_say_no_other_dependency():
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS.splitlines()]
    assert [line for line in lines if line] == ["torch==2.13.0", ".[test,ray,multilingual]"]


@pytest.mark.slow
def test_pip_install_dot_alone_gives_a_working_serve(tmp_path):
    """A fresh virtual environment, `pip install .` (no requirements file, no extras), then `clinlinker serve`
    answers /health on the demo gazetteer."""
    import subprocess
    import sys
    import urllib.request

    from tests.servers import free_port

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-cache-dir", str(ROOT)],
                             capture_output=True, text=True, cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-3000:]
    port = free_port()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "CLINLINKER_DATA_DIR": str(tmp_path / "var")}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(venv / "bin" / "clinlinker"), "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                    health = json.loads(reply.read())
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(0.5)
        assert health["status"] == "UP" and health["demo"] is True
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
