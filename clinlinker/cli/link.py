"""Using an index: `clinlinker link` (candidates for mentions), `evaluate` (top-k accuracy), `precision` (the faster precisions judged by accuracy)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from clinlinker.cli.common import add_runtime_options, parse_ks, positive_int
from clinlinker.errors import ClinlinkerError

log = logging.getLogger("clinlinker")



def register(sub) -> None:
    p = sub.add_parser("link", help="top-k candidate concepts for mentions")
    p.add_argument("mentions", nargs="*", metavar="MENTION")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--input", metavar="FILE", help="one mention per line, or a linking TSV (filename mark label "
                   "off0 off1 span ...)")
    p.add_argument("--top-k", type=positive_int, default=25)
    p.add_argument("--label", help="the span label of the mentions given as arguments or lines (e.g. SINTOMA): "
                   "they are served from that label's part of the knowledge base (a linking TSV has its own labels)")
    p.add_argument("--format", choices=["tsv", "json"], default="tsv")
    p.add_argument("--texts", metavar="DIR", help="the documents of a linking TSV's filename column (DIR/FILENAME.txt, "
                   "the shared tasks' layout): the acronyms a document defines are spelled out as it defines them, "
                   "as the backend does with a task's text")
    add_runtime_options(p)
    p.set_defaults(handler=cmd_link)

    p = sub.add_parser("evaluate", help="top-k accuracy against gold links")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--gold", action="append", required=True, metavar="TSV",
                   help="gold linking TSV (filename mark label off0 off1 span code semantic_rel); repeatable")
    p.add_argument("--k", type=parse_ks, default=[1, 5, 10, 25], help="comma-separated k values (default 1,5,10,25)")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT ('-' for stdout)")
    p.add_argument("--misses", metavar="FILE", help="also write every mention whose gold code is outside its top-k "
                   "(the largest k) to FILE (TSV), each with its cause (not in the knowledge base, outside the "
                   "label's part, abbreviation, the gold's parent or child listed instead, no shared character "
                   "3-gram, outranked), and print the table of causes")
    p.add_argument("--texts", metavar="DIR", help="the documents of a linking TSV's filename column (DIR/FILENAME.txt, "
                   "the shared tasks' layout): the acronyms a document defines are spelled out as it defines them, "
                   "as the backend does with a task's text")
    add_runtime_options(p)
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("precision", help="judge the faster precisions by accuracy: encode the knowledge base and gold "
                                         "mentions at fp32 and at bf16, keep bf16 for this model only if top-1 and "
                                         "top-25 stay within 0.2 points on every gold file (used by index "
                                         "--precision auto)")
    p.add_argument("--index", required=True, metavar="DIR", help="an fp32 dense or hybrid index")
    p.add_argument("--gold", action="append", required=True, metavar="TSV", help="gold linking TSV, one per corpus; "
                   "repeatable")
    p.add_argument("--precisions", default="bf16", help="comma-separated (default bf16)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--device")
    p.add_argument("--detect", action="store_true", help="only say what this hardware runs fast, and stop")
    p.set_defaults(handler=cmd_precision)


def cmd_link(args) -> int:
    from clinlinker.links import is_link_file, read_documents, read_links

    links = None
    mentions = list(args.mentions)
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise ClinlinkerError(f"--input {path}: no such file")
        if is_link_file(path):
            links = read_links(path, require_code=False)
            mentions = [link.span for link in links]
        else:
            mentions += _read_mention_lines(path)
    if not mentions:
        raise ClinlinkerError("no mentions: give them as arguments or with --input FILE")
    if args.texts and links is None:
        raise ClinlinkerError("--texts needs --input as a linking TSV (its filename column names the documents)")
    contexts = read_documents(links, args.texts) if args.texts else None
    linker, _ = _linker(args)
    labels = [link.label for link in links] if links is not None else [args.label] * len(mentions)
    results = linker.link(mentions, args.top_k, labels=labels, contexts=contexts)
    out = sys.stdout
    if args.format == "json":
        items = []
        for i, (mention, candidates) in enumerate(zip(mentions, results)):
            item = {"mention": mention}
            if links is not None:
                link = links[i]
                item.update(filename=link.filename, mark=link.mark, label=link.label, off0=link.start,
                            off1=link.end, gold_code=link.code or None)
            elif args.label:
                item["label"] = args.label
            item["candidates"] = [c.to_dict() for c in candidates]
            if len(candidates) < args.top_k:
                item["short"] = shortfall(linker, labels[i], len(candidates), args.top_k)
            items.append(item)
        json.dump(items, out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        prefix = ["filename", "mark", "label", "off0", "off1"] if links is not None else []
        out.write("\t".join(prefix + ["mention", "rank", "code", "preferred_term", "semantic_tag", "score",
                                      "matched_term", "evidence", "parents"]) + "\n")
        for i, (mention, candidates) in enumerate(zip(mentions, results)):
            lead = [] if links is None else [links[i].filename, links[i].mark, links[i].label, str(links[i].start),
                                             str(links[i].end)]
            for c in candidates:
                evidence = f"{c.evidence} ({c.via})" if c.via else c.evidence
                parents = "; ".join(f"{code} {term}".rstrip() for code, term in c.parents)
                out.write("\t".join(lead + [mention, str(c.rank), c.code, c.preferred_term, c.semantic_tag,
                                            f"{c.score:.4f}", c.matched_term, evidence, parents]) + "\n")
            if len(candidates) < args.top_k:
                log.info("%r: %s", mention, shortfall(linker, labels[i], len(candidates), args.top_k))
    return 0


def cmd_evaluate(args) -> int:
    from clinlinker.evaluate.metrics import evaluate_links, format_report
    from clinlinker.links import read_documents, read_links

    gold = [link for path in args.gold for link in read_links(path)]
    if not gold:
        raise ClinlinkerError(f"no gold links in {', '.join(args.gold)}")
    contexts = read_documents(gold, args.texts) if args.texts else None
    linker, cache = _linker(args)
    depth = max(args.k)
    candidates = linker.link([link.span for link in gold], depth, labels=[link.label for link in gold],
                             contexts=contexts)
    report = evaluate_links(gold, [[c.code for c in cands] for cands in candidates], known_codes=linker.kb, ks=args.k)
    short = sum(len(cands) < depth for cands in candidates)
    report["short_lists"] = {"k": depth, "n": short, "share": round(short / len(candidates), 4)}
    report["routing"] = linker.describe()["routing"]
    report["index"] = {k: v for k, v in linker.describe().items() if k != "fingerprint"}
    report["gold"] = [str(p) for p in args.gold]
    print(f"index {args.index}: {report['index']['engine']} engine, model {report['index']['model']}, "
          f"{report['index']['concepts']} concepts")
    print(format_report(report))
    if short:
        print(f"{short} of {len(candidates)} lists hold fewer than {depth} candidates (too few concepts with "
              "evidence in their label's part)")
    if args.misses:
        from clinlinker.evaluate.misses import classify_misses, format_summary, summarize, write_misses

        misses = classify_misses(gold, [[c.code for c in cands] for cands in candidates], linker.kb, k=depth,
                                 allowed=linker.allowed)
        report["misses"] = summarize(misses, sum(link.is_clean for link in gold))
        write_misses(misses, args.misses, linker.kb)
        print(format_summary(report["misses"]))
        print(f"misses written to {args.misses}")
    if args.json:
        text = json.dumps(report, indent=2, ensure_ascii=False)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


def cmd_precision(args) -> int:
    from clinlinker.evaluate.precision import check, detect

    hardware = detect()
    print(f"hardware: {hardware['cpu']} ({', '.join(hardware['cpu_flags']) or 'no AVX2/AVX-512'}), torch CPU "
          f"capability {hardware['torch_cpu_capability']}, GPU {hardware['gpu']['name'] if hardware['gpu'] else 'none'}"
          f"; fast here: {', '.join(hardware['fast_precisions']) or 'fp32 only'}")
    if args.detect:
        return 0
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = [p for p in precisions if p not in ("bf16", "int8")]
    if bad:
        raise ClinlinkerError(f"--precisions: {', '.join(bad)} unknown (bf16, int8)")
    record = check(args.index, args.gold, precisions=precisions, batch_size=args.batch_size, device=args.device)
    for name, rows in record["accuracy"].items():
        for path, acc in rows.items():
            print(f"{name:5s} {Path(path).name:30s} n={acc['n']:6d} top-1 {acc['top1']:.4f} top-25 {acc['top25']:.4f}")
    for precision, verdict in record["precisions"].items():
        print(f"{precision}: {'PASSED' if verdict['passed'] else 'FAILED'} (worst {verdict['worst']}; tolerance "
              f"{record['tolerance'] * 100:.1f} points)")
    print(f"verdict written to {record['written']}: `clinlinker index --precision auto` uses it on hardware that runs "
          "it fast")
    return 0


def _linker(args):
    from clinlinker.encode.cache import make_cache
    from clinlinker.kb.routing import routing_from_setting
    from clinlinker.linking.linker import Linker
    from clinlinker.links import read_links

    routing = routing_from_setting(args.routing)
    cache = make_cache(args.redis_url)
    linker = Linker.from_directory(args.index, model=args.model, cache=cache, batch_size=args.batch_size,
                                   device=args.device, routing=routing, runtime=args.runtime, reranker=args.reranker or ...,
                                   rerank_depth=args.rerank_depth,
                                   rerank_cache=make_cache(args.redis_url, prefix="clinlinker:rr:"),
                                   abbreviations=False if args.no_abbreviations else None)
    if args.learn:
        linker.learn([(link.span, link.code) for path in args.learn for link in read_links(path)])
    for label, count in linker.describe()["routing"]["concepts_per_label"].items():
        log.info("label %s: served from %d of %d concepts (%s)", label, count, len(linker.kb), routing.source)
    return linker, cache


def shortfall(linker, label, found: int, k: int) -> str:
    """Why a list holds fewer than k candidates, in words."""
    allowed = linker.allowed(label)
    part = f"the {label} part ({int(allowed.sum())} concepts)" if allowed is not None else "the knowledge base"
    return (f"{found} of {k}: only {found} concepts of {part} have evidence for this mention (similar terms or "
            "their hierarchy neighbours); nothing is listed without evidence")


def _read_mention_lines(path: Path) -> list[str]:
    from clinlinker.errors import InputFileError

    mentions = []
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InputFileError(path, lineno, "not valid UTF-8; re-save the file as UTF-8") from None
            if text:
                mentions.append(text)
    return mentions
