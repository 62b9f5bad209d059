"""The one Label Studio client: auth (legacy and personal tokens, refreshed on 401), and errors that say what and
where, against a real HTTP server on loopback that answers as Label Studio 1.23 does for these calls."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.labelstudio.api import LabelStudio, LabelStudioError
from tests.servers import free_port

PERSONAL = "aaa.bbb.ccc"  # a JWT refresh token's shape


@pytest.fixture
def studio():
    state = {"access": 0, "seen": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
            state["seen"].append(("POST", self.path, self.headers.get("Authorization"), body))
            if self.path == "/api/token/refresh":
                if body != {"refresh": PERSONAL}:
                    return self.reply(401, {"detail": "Token is invalid or expired"})
                state["access"] += 1
                return self.reply(200, {"access": f"access-{state['access']}"})
            return self.reply(201, {"id": 7, **body})

        def do_GET(self):
            auth = self.headers.get("Authorization")
            state["seen"].append(("GET", self.path, auth, None))
            if self.path.startswith("/api/version"):
                return self.reply(200, {"release": "1.23.2"})
            if auth not in ("Token legacy", f"Bearer access-{state['access']}") or auth == "Bearer access-1":
                return self.reply(401, {"detail": "Authentication credentials were not provided."})  # expired
            if self.path.startswith("/api/projects/404"):
                return self.reply(404, {"detail": "Not found."})
            return self.reply(200, [{"id": 1, "path": self.path}])

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()
    server.server_close()


def test_a_legacy_token_goes_as_is(studio):
    url, state = studio
    assert LabelStudio(url, "legacy").webhooks(3) == [{"id": 1, "path": "/api/webhooks?project=3"}]
    assert state["seen"][-1][2] == "Token legacy"


def test_a_personal_token_is_exchanged_and_exchanged_again_when_its_access_expires(studio):
    url, state = studio
    ls = LabelStudio(url, PERSONAL)
    # the first access token is refused (expired): the client refreshes once and repeats the call
    assert ls.predictions(5) == [{"id": 1, "path": "/api/predictions?project=5"}]
    assert [s[1] for s in state["seen"]] == ["/api/token/refresh", "/api/predictions?project=5",
                                            "/api/token/refresh", "/api/predictions?project=5"]
    assert state["seen"][-1][2] == "Bearer access-2"
    ls.users()
    assert state["access"] == 2  # the access token is kept while it works


def test_errors_say_what_and_where(studio):
    url, _ = studio
    with pytest.raises(LabelStudioError, match=r"answered 404 to GET .*/api/projects/404.*project id") as caught:
        LabelStudio(url, "legacy").project(404)
    assert caught.value.status == 404
    with pytest.raises(LabelStudioError, match="answered 401") as caught:
        LabelStudio(url, "wrong").whoami()
    assert caught.value.status == 401 and "Access Token" in str(caught.value)
    with pytest.raises(LabelStudioError, match=r"cannot reach Label Studio at http://127.0.0.1:1 \(GET /api/users\)"):
        LabelStudio("http://127.0.0.1:1", "legacy", timeout=2).users()
    with pytest.raises(LabelStudioError, match="no token"):
        LabelStudio(url, None).users()
