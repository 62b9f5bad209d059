"""`clinlinker ls-project`: from a corpus to a ready Label Studio project in one command.

Reads a linking TSV (or a spans TSV without codes) and the texts it points into, creates a
project with our labeling config, asks the running backend for the candidates of every span
(so that its picker knows them), imports the tasks in bulk WITH those predictions, and
connects the backend (interactive), through backend/labelstudio/api.py.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections import defaultdict
from importlib import resources
from pathlib import Path

from clinlinker.errors import ClinlinkerError, InputFileError
from clinlinker.links import read_links

log = logging.getLogger(__name__)

CONFIG_DIR = Path(str(resources.files("label_studio_config")))  # the repository's folder, or the installed copy
CONFIGS = {"all": "coding_all.xml", "diseases": "coding_diseases.xml", "symptoms": "coding_symptoms.xml",
           "procedures": "coding_procedures.xml"}
CONFIG_BACKEND_URL = "http://localhost:9090"


def label_config(name: str, backend_public_url: str, picker_token: str | None = None,
                 project: int | str | None = None) -> str:
    """A labeling config with the backend's URL as browsers see it; with a picker token, the candidate list's and
    the search page's URLs carry it (a browser cannot send Basic-auth credentials there); with a project, the
    candidate list is that project's (documents of the same name in other projects are not mixed in)."""
    path = Path(name) if name not in CONFIGS else CONFIG_DIR / CONFIGS[name]
    if not path.is_file():
        raise ClinlinkerError(f"--config {name}: neither one of {', '.join(CONFIGS)} nor an XML file")
    xml = path.read_text(encoding="utf-8")
    if project is not None:
        xml = xml.replace("/taxonomy?doc=$doc_id", f"/taxonomy?doc=$doc_id&amp;project={int(project)}")
    if picker_token:
        from urllib.parse import quote

        token = quote(picker_token, safe="")
        xml = xml.replace("/taxonomy?doc=$doc_id", f"/taxonomy?doc=$doc_id&amp;token={token}")
        xml = xml.replace(f"{CONFIG_BACKEND_URL}/search&quot;", f"{CONFIG_BACKEND_URL}/search?token={token}&quot;")
    return xml.replace(CONFIG_BACKEND_URL, backend_public_url.rstrip("/"))


def tasks_from_links(links_path, texts_dir, *, limit: int | None = None) -> tuple[list[dict], list[str]]:
    """One task per document: its text, doc_id and the spans of the linking/spans TSV."""
    texts_dir = Path(texts_dir)
    by_doc: dict[str, list] = defaultdict(list)
    for link in read_links(links_path, require_code=False):
        by_doc[link.filename].append(link)
    tasks, problems = [], []
    for doc in sorted(by_doc):
        if limit is not None and len(tasks) >= limit:
            break
        path = texts_dir / (doc if doc.endswith(".txt") else f"{doc}.txt")
        if not path.is_file():
            problems.append(f"{links_path}: document {doc}: no text file {path}")
            continue
        text = path.read_text(encoding="utf-8")
        mentions = []
        for link in sorted(by_doc[doc], key=lambda l: (l.start, l.end)):
            if link.end > len(text) or " ".join(text[link.start:link.end].split()) != " ".join(link.span.split()):
                problems.append(f"{links_path}:{link.line}: span {link.span!r} is not at {link.start}-{link.end} "
                                f"of {path.name}; skipped")
                continue
            mentions.append({"start": link.start, "end": link.end, "label": link.label,
                             "text": text[link.start:link.end]})
        tasks.append({"text": text, "doc_id": doc, "mentions": mentions})
    if not tasks:
        raise InputFileError(links_path, None, "no document of this file has a text in " + str(texts_dir))
    return tasks, problems


def backend_predictions(backend_url: str, tasks: list[dict], config_xml: str, *, auth: str | None = None,
                        batch: int = 50, timeout: float = 600.0, project: str | None = None) -> list[dict]:
    """Ask the running backend for the predictions (it also remembers the candidates for its picker)."""
    out = []
    for start in range(0, len(tasks), batch):
        chunk = [{"id": None, "data": data} for data in tasks[start:start + batch]]
        body = json.dumps({"tasks": chunk, "label_config": config_xml, "params": {"context": None},
                           "project": project}).encode()
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        request = urllib.request.Request(f"{backend_url.rstrip('/')}/predict", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                results = json.loads(response.read())["results"]
        except urllib.error.HTTPError as exc:
            raise ClinlinkerError(f"the backend at {backend_url} answered {exc.code}: "
                                  f"{exc.read().decode(errors='replace')[:300]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ClinlinkerError(f"cannot reach the backend at {backend_url} ({getattr(exc, 'reason', exc)}); "
                                  "start it with `clinlinker serve`") from None
        out.extend(results)
    return out


def create_project(*, url: str, token: str, backend_url: str, links_path, texts_dir, title: str,
                   config: str = "all", backend_public_url: str | None = None, limit: int | None = None,
                   basic_auth: tuple[str, str] | None = None, picker_token: str | None = None) -> dict:
    import base64

    from backend.labelstudio.api import LabelStudio

    xml = label_config(config, backend_public_url or backend_url, picker_token=picker_token)
    tasks, problems = tasks_from_links(links_path, texts_dir, limit=limit)
    auth = ("Basic " + base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()) if basic_auth else None
    ls = LabelStudio(url, token, timeout=600)
    project = ls.create_project(title=title, label_config=xml, show_collab_predictions=True)["id"]
    # the candidate lists are the project's own: its id goes into the picker's URL and the predictions' request
    try:
        xml = label_config(config, backend_public_url or backend_url, picker_token=picker_token, project=project)
        ls.update_project(project, label_config=xml)
        predictions = backend_predictions(backend_url, tasks, xml, auth=auth, project=str(project))
    except BaseException:
        ls.delete_project(project)  # no half-made project left behind
        raise
    ls.import_tasks(project, [{"data": data, "predictions": [prediction]}
                              for data, prediction in zip(tasks, predictions)])
    ml_args = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0],
               "basic_auth_pass": basic_auth[1]} if basic_auth else {}
    ls.connect_ml_backend(project, backend_url, title="clinlinker", is_interactive=True, **ml_args)
    spans = sum(len(t["mentions"]) for t in tasks)
    return {"project": project, "url": f"{url.rstrip('/')}/projects/{project}", "tasks": len(tasks),
            "spans": spans, "model_version": predictions[0]["model_version"] if predictions else None,
            "problems": problems}
