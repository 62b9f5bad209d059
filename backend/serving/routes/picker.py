"""The coder's picker, called from the browser: /taxonomy (a document's candidate lists, for Label Studio's
Taxonomy tag) and /search (the knowledge base by term or code, as JSON or a page)."""

from __future__ import annotations

import html

from flask import Blueprint, Response, jsonify, request

from backend.serving.model import PayloadError
from backend.serving.request_body import project_of
from backend.serving.routes import served

TAXONOMY_MAX_AGE = 5  # seconds a browser may reuse a candidate list without asking again
PATHS = ("/taxonomy", "/search")  # the browser cannot send Basic credentials here: a picker token may stand in
picker = Blueprint("picker", __name__)


@picker.get("/taxonomy")
def taxonomy():
    """`?doc=ID[&project=N][&path=NODE]`: the picker's candidate list of a document (of one project; without it
    the newest of any), with an ETag and a 5 s private cache; `path` loads the node of mentions drawn after the
    task opened."""
    s = served()
    doc = request.args.get("doc", "").strip()
    if not doc:
        raise PayloadError("doc: the taxonomy URL needs ?doc=$doc_id (see label_studio_config/)")
    if len(doc) > 400 or "\x00" in doc:
        raise PayloadError("doc: a document name of more than 400 characters, or with a NUL character")
    s.metrics.taxonomy_requests.inc()
    # Label Studio fetches the list several times per task open: a short freshness and a validator let the
    # browser reuse one answer, and a changed list (new predictions for the document) gets a new ETag
    path = request.args.get("path")
    if path and "\x00" in path:
        raise PayloadError("path: a node with a NUL character")
    project = project_of(request.args.get("project") or None)
    response = jsonify(s.model.taxonomy(doc, path=path.strip() if path else None, project=project))
    response.add_etag()
    response.headers["Cache-Control"] = f"private, max-age={TAXONOMY_MAX_AGE}, must-revalidate"
    response.vary.add("Authorization")
    return response.make_conditional(request)


@picker.get("/search")
def search():
    """`?q=TEXT[&k=25][&label=LABEL]`: the knowledge base searched by term or code, in a label's part; HTML for
    browsers, JSON otherwise."""
    s = served()
    labels = s.config.labels
    query = request.args.get("q", "")
    if len(query) > 1000:
        raise PayloadError("q: a query of more than 1000 characters")
    try:
        k = max(1, min(int(request.args.get("k", "25")), 200))
    except ValueError:
        raise PayloadError("k: expected an integer") from None
    label = request.args.get("label", "").strip() or None
    if label is not None and label not in labels:
        raise PayloadError(f"label: {label!r} is not one of the labels served ({', '.join(labels)})")
    project = project_of(request.args.get("project") or None)
    results = s.model.search(query, k, label, project=project) if query.strip() else []
    if "text/html" in request.headers.get("Accept", "") and request.args.get("format") != "json":
        token = request.args.get("token", "")  # kept on the page's own searches (the browser has no Basic auth)
        return Response(_search_page(query, results, label, labels, token), mimetype="text/html")
    return jsonify(query=query, label=label, candidates=results)


def _search_page(query: str, results: list[dict], label: str | None, labels, token: str = "") -> str:
    def row(c):
        matched = c.get("matched_term") or ""
        matched = f"«{html.escape(matched)}»" if matched and matched != c["preferred_term"] else ""
        parents = "<br>".join(f"⊂ <code>{html.escape(p['code'])}</code> {html.escape(p.get('term') or '')}"
                              for p in c.get("parents") or [])
        via = f" ({html.escape(c['via'])})" if c.get("via") else ""
        return (f"<tr><td><code>{html.escape(c['code'])}</code></td><td>{html.escape(c['preferred_term'])}</td>"
                f"<td>{matched}</td><td>{html.escape(c['semantic_tag'])}</td><td>{parents}</td>"
                f"<td>{c['score']:.3f}</td><td>{html.escape(c.get('evidence') or '')}{via}</td></tr>")

    options = "".join(f"<option value=\"{html.escape(lab)}\"{' selected' if lab == label else ''}>"
                      f"{html.escape(lab)}</option>" for lab in labels)
    return (f"<!doctype html><meta charset=utf-8><title>clinlinker: buscar</title>"
            f"<form><input name=q value=\"{html.escape(query)}\" autofocus size=50> "
            f"<select name=label><option value=\"\">todo el catálogo</option>{options}</select> "
            + (f"<input type=hidden name=token value=\"{html.escape(token)}\">" if token else "")
            + "<button>Buscar</button></form>"
            f"<p>Copie el código en el campo «¿Fuera de la lista? Escriba el código SNOMED CT…» de la mención "
            f"(A+B para compuestos, NO_CODE si ninguno).</p>"
            f"<table border=1 cellpadding=4><tr><th>código</th><th>término preferido</th><th>sinónimo que coincide</th>"
            f"<th>etiqueta</th><th>padres (is-a)</th><th>score</th><th>evidencia</th></tr>"
            f"{''.join(row(c) for c in results)}</table>")
