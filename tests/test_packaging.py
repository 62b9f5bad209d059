"""What can be checked of the install story without a container engine: the Dockerfile, .ci/run, the requirements
and the README say the same thing."""

import re

from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
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
    known = set(re.findall(r'"(CLINLINKER_[A-Z_]+)"', (ROOT / "backend" / "config.py").read_text(encoding="utf-8")))
    env = backend["environment"]
    for name in env:
        if name.startswith("CLINLINKER_"):
            assert name in known, f"{name} is not a backend setting"
            assert f"`{name}`" in README or f"`{name.rsplit('_', 1)[0]}" in README, f"{name} not in README"
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
    assert not re.search(r"^-e\s", REQUIREMENTS, re.M) and re.search(r"^\.$", REQUIREMENTS, re.M)
    assert "pip install -q -e" not in CI and "pip install -e" not in DOCKERFILE
    assert "--no-install-recommends chromium" in CI
