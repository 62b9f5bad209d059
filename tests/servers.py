"""A real `clinlinker serve` (and a Redis of one's own) in child processes, for the fault tests and
bench/reliability.py."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    """A redis-server of the caller alone (it may be frozen with SIGSTOP and killed)."""

    def __init__(self, directory):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                     "no", "--dir", str(directory)]
        self.procs = []

    def start(self):
        proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return proc
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait()
