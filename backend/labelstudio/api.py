"""The one client of Label Studio's REST API (as 1.23 serves it): every call the backend's commands make to a Label
Studio server goes through `LabelStudio`, with one place for auth, timeouts and errors.

Auth: a legacy token goes as `Token ...`; a personal access token (a JWT refresh token) is exchanged at
/api/token/refresh for a short-lived access token, exchanged again when Label Studio answers 401. Errors are a
`LabelStudioError` that names the method, the URL and what Label Studio said, never a urllib traceback.

Standard library only: label-studio-sdk 2.x would serve these calls, but it brings OpenCV, pandas, nltk, a code
generator and requests-mock for the dozen endpoints used here, and its generated client follows the newest server.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from clinlinker.errors import ClinlinkerError


class LabelStudioError(ClinlinkerError):
    """A call to Label Studio failed: `status` is the HTTP status, or None when the server was not reached."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class LabelStudio:
    def __init__(self, url: str, token: str | None, *, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._access: str | None = None

    # --- transport ---------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body=None, *, params: dict | None = None, timeout: float | None = None,
                auth: bool = True):
        """One call; the JSON answer (None when empty). Raises LabelStudioError."""
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        for attempt in (1, 2):
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if auth:
                headers["Authorization"] = self._authorization(refresh=attempt == 2)
            data = json.dumps(body).encode() if body is not None else None
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                    raw = response.read()
                return json.loads(raw) if raw.strip() else None
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and auth and attempt == 1 and self._is_personal_token():
                    continue  # the access token expired: exchange the refresh token again, once
                detail = exc.read().decode("utf-8", errors="replace")[:300]
                raise LabelStudioError(f"Label Studio answered {exc.code} to {method} {url}: {detail or exc.reason}"
                                       f"{_HINTS.get(exc.code, '')}", exc.code) from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                raise LabelStudioError(f"cannot reach Label Studio at {self.url} ({method} {path}): "
                                       f"{getattr(exc, 'reason', exc)}") from None
            except json.JSONDecodeError:
                raise LabelStudioError(f"Label Studio's answer to {method} {url} is not JSON") from None
        raise AssertionError("unreachable")

    def get(self, path: str, **params):
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body, **params):
        return self.request("POST", path, body, params=params or None)

    def patch(self, path: str, body):
        return self.request("PATCH", path, body)

    def delete(self, path: str):
        return self.request("DELETE", path)

    def _is_personal_token(self) -> bool:
        return bool(self.token) and self.token.count(".") == 2

    def _authorization(self, refresh: bool = False) -> str:
        if not self.token:
            raise LabelStudioError(f"no token for Label Studio at {self.url}: pass --ls-token / --token or set "
                                   "LABEL_STUDIO_API_KEY")
        if not self._is_personal_token():
            return f"Token {self.token}"
        if self._access is None or refresh:
            answer = self.request("POST", "/api/token/refresh", {"refresh": self.token}, auth=False)
            self._access = (answer or {}).get("access")
            if not self._access:
                raise LabelStudioError(f"Label Studio at {self.url} gave no access token for the personal token")
        return f"Bearer {self._access}"

    # --- the calls the commands make ----------------------------------------------------------------------------

    def version(self) -> dict:
        return self.request("GET", "/api/version", auth=False) or {}

    def whoami(self) -> dict:
        return self.get("/api/current-user/whoami") or {}

    def project(self, project: int) -> dict:
        return self.get(f"/api/projects/{int(project)}") or {}

    def webhooks(self, project: int) -> list:
        return self.get("/api/webhooks", project=int(project)) or []

    def export(self, project: int, *, timeout: float | None = None) -> list:
        """Every task of a project with its annotations (JSON export); predictions come as ids only."""
        return self.request("GET", f"/api/projects/{int(project)}/export",
                            params={"exportType": "JSON", "download_all_tasks": "true"}, timeout=timeout) or []

    def predictions(self, project: int, *, timeout: float | None = None) -> list:
        return self.request("GET", "/api/predictions", params={"project": int(project)}, timeout=timeout) or []

    def users(self) -> list:
        users = self.get("/api/users")
        return users.get("results", []) if isinstance(users, dict) else users or []

    def views(self, project: int) -> list:
        views = self.get("/api/dm/views", project=int(project))
        return views if isinstance(views, list) else []

    def create_view(self, project: int, data: dict) -> dict:
        return self.post("/api/dm/views", {"project": int(project), "data": data}) or {}

    def delete_view(self, view: int) -> None:
        self.delete(f"/api/dm/views/{int(view)}")

    def create_project(self, **fields) -> dict:
        return self.post("/api/projects", fields) or {}

    def update_project(self, project: int, **fields) -> dict:
        return self.patch(f"/api/projects/{int(project)}", fields) or {}

    def delete_project(self, project: int) -> None:
        self.delete(f"/api/projects/{int(project)}")

    def import_tasks(self, project: int, tasks: list, *, timeout: float | None = None) -> dict:
        return self.request("POST", f"/api/projects/{int(project)}/import", tasks, timeout=timeout) or {}

    def connect_ml_backend(self, project: int, url: str, **fields) -> dict:
        return self.post("/api/ml", {"project": int(project), "url": url, **fields}) or {}


_HINTS = {401: " (check the token: Account & Settings -> Access Token)", 403: " (check the token's permissions)",
          404: " (check the URL and the project id)"}
