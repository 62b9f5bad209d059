"""`clinlinker curate`: agreement, adjudication and the assistant's effect on a Label Studio project."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from backend.commands.export import add_export_source, tasks_from_source
from clinlinker.errors import ClinlinkerError

log = logging.getLogger("clinlinker")



def register(sub) -> None:
    p = sub.add_parser("curate", help="gold-standard curation of a Label Studio project: agreement between "
                                      "coders, the adjudicated gold standard, disagreements, the assistant's effect, "
                                      "an HTML report")
    add_export_source(p, "the project")
    p.add_argument("--index", metavar="DIR", help="the index coders were served: its knowledge base checks the codes "
                   "and gives the hierarchy (agreement within a concept's family), its candidate lists the ranks of "
                   "accepted codes beyond top-1")
    p.add_argument("--policy", default="majority", help="adjudication where no annotation is marked ground truth: "
                   "majority (default), newest, or coder:EMAIL")
    p.add_argument("--report", metavar="HTML", help="write the report a curation lead opens")
    p.add_argument("--gold", metavar="TSV", help="write the adjudicated gold standard (linking TSV)")
    p.add_argument("--disagreements", metavar="TSV", help="write every disagreement (task, span, each coder's code)")
    p.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    p.add_argument("--review-tab", action="store_true", help="with --url: add a Data Manager tab to the project "
                   "that shows only the tasks in disagreement, for the adjudicator")
    p.add_argument("--doc-field", default=os.environ.get("CLINLINKER_DOC_FIELD", "doc_id"))
    p.add_argument("--text-field", default="text", help="task-data field of the text (default: text)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a problem is reported")
    p.set_defaults(handler=cmd_curate)


def cmd_curate(args) -> int:
    from backend.labelstudio.curation import (
        adjudicate,
        assistant_effect,
        create_review_tab,
        fetch_users,
        read_curation,
        report_html,
        write_disagreements,
    )
    from clinlinker.evaluate.agreement import agreement
    from clinlinker.links import write_links

    if args.review_tab and not args.url:
        raise ClinlinkerError("--review-tab needs --url (the tab is made in the live project)")
    tasks = tasks_from_source(args)
    users = fetch_users(args.url, args.token) if args.url else {}
    linker = None
    if args.index:
        from clinlinker.linking.linker import Linker

        linker = Linker.from_directory(args.index)
    kb = linker.kb if linker is not None else None
    curation = read_curation(tasks, doc_field=args.doc_field, text_field=args.text_field, users=users, kb=kb)
    agree = agreement(curation.coded(), kb=kb)
    gold = adjudicate(curation, args.policy)
    effect = assistant_effect(curation, linker=linker, gold=gold["links"])
    for problem in curation.problems:
        print(f"clinlinker curate: {problem}", file=sys.stderr)
    task_of_doc = {a.doc: a.task for a in curation.annotations}
    if args.gold:
        write_links(gold["links"], args.gold)
    if args.disagreements:
        write_disagreements(agree["disagreements"], task_of_doc, args.disagreements)
    title = f"Curation report: project {args.project}" if args.url else f"Curation report: {Path(args.input).name}"
    if args.report:
        Path(args.report).write_text(report_html(title, curation, agree, effect, gold), encoding="utf-8")
    if args.json:
        figures = {"counts": curation.counts, "problems": [str(p) for p in curation.problems], "agreement": agree,
                   "assistant": effect, "adjudication": {k: v for k, v in gold.items() if k != "links"}}
        Path(args.json).write_text(json.dumps(figures, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    tab = None
    if args.review_tab:
        tasks_in_disagreement = {task_of_doc[d["doc"]] for d in agree["disagreements"]} | \
            {u["task"] for u in gold["unresolved"]}
        tab = create_review_tab(args.url, args.token, args.project, tasks_in_disagreement)
    o = agree["overall"]
    summary = (f"clinlinker curate: {curation.counts.get('annotations', 0)} annotations of "
               f"{curation.counts.get('tasks', 0)} tasks by {len(agree['coded_documents'])} coder(s); "
               f"{len(curation.problems)} problem(s)")
    if o["code_compared"]:
        summary += (f"; span F1 {o['span_f1']:.3f}, exact code agreement {o['code_exact']:.3f} "
                    f"(family {o['code_family']:.3f}, kappa {o['code_kappa']}) on {o['code_compared']} shared spans")
    summary += (f"; {len(agree['disagreements'])} disagreement(s); gold standard {len(gold['links'])} links "
                f"({len(gold['unresolved'])} unresolved)")
    if tab:
        summary += f"; review tab with {tab['tasks']} task(s): {tab['url']}"
    print(summary, file=sys.stderr)
    return 1 if curation.problems and args.strict else 0
