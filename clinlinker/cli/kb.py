"""Knowledge bases: `clinlinker kb rf2 | umls | stats`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("clinlinker")



def register(sub) -> None:
    p = sub.add_parser("kb", help="knowledge bases: import a SNOMED CT RF2 release; statistics and coverage")
    kb = p.add_subparsers(dest="kb_command", required=True, metavar="KB_COMMAND")
    k = kb.add_parser("rf2", help="an unzipped RF2 release (Snapshot, or Full) -> gazetteer.tsv, hierarchy.tsv, "
                                  "inactive.tsv, release.json")
    k.add_argument("--release", required=True, metavar="DIR", help="the unzipped release (one or several editions: "
                   "International + extension, merged)")
    k.add_argument("--out", required=True, metavar="DIR")
    k.add_argument("--language", default="es", help="description language (default: %(default)s)")
    k.add_argument("--full", action="store_true", help="read the Full files (each component's latest row) even "
                   "where Snapshot files exist")
    k.add_argument("--language-refset", action="append", default=[], metavar="ID",
                   help="language refset(s) deciding preferred and acceptable terms (default: every one found)")
    k.add_argument("--descendants-of", action="append", default=[], metavar="SCTID",
                   help="keep only these concepts and their descendants (repeatable; with --tag: either)")
    k.add_argument("--tag", action="append", default=[], help="keep only concepts with this semantic tag "
                   "(repeatable)")
    k = kb.add_parser("umls", help="a UMLS release's META folder (MRCONSO.RRF, MRREL.RRF) -> the same files, for "
                                   "SNOMED CT sources")
    k.add_argument("--meta", required=True, metavar="DIR")
    k.add_argument("--out", required=True, metavar="DIR")
    k.add_argument("--language", default="es", help="string language (default: %(default)s)")
    k.add_argument("--sab", action="append", default=[], help="UMLS source(s) of the strings (default: SCTSPA)")
    k.add_argument("--descendants-of", action="append", default=[], metavar="SCTID")
    k.add_argument("--tag", action="append", default=[])
    k = kb.add_parser("stats", help="concepts, terms per concept, tags, hierarchy depth; with --links, how many "
                                    "gold codes the knowledge base holds, per label")
    k.add_argument("--gazetteer", action="append", required=True, metavar="TSV")
    k.add_argument("--hierarchy", metavar="TSV")
    k.add_argument("--links", action="append", default=[], metavar="TSV", help="linking TSV(s) whose codes to look "
                   "up (repeatable)")
    k.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    p.set_defaults(handler=cmd_kb)


def cmd_kb(args) -> int:
    if args.kb_command in ("rf2", "umls"):
        from clinlinker.kb.rf2 import read_release, subset, write_release

        if args.kb_command == "umls":
            from clinlinker.kb.umls import read_umls

            release = read_umls(args.meta, language=args.language, sources=tuple(args.sab) or ("SCTSPA",))
        else:
            release = read_release(args.release, language=args.language, kind="full" if args.full else None,
                                   language_refsets=tuple(args.language_refset))
        if args.descendants_of or args.tag:
            release = subset(release, descendants_of=tuple(args.descendants_of), tags=tuple(args.tag))
        paths = write_release(release, args.out, language=args.language)
        counts = release.info["counts"]
        print(f"clinlinker kb {args.kb_command}: {release.info['release_type']} release of "
              f"{release.info.get('release_date', '?')} ({len(release.info.get('modules', ()))} module(s)): "
              f"{counts['concepts']} concepts, {counts['terms']} terms, "
              f"{counts['is_a_edges']} is-a edges, {len(release.inactive)} inactive concepts with a replacement; "
              f"{counts.get('no_terms_in_language', 0)} active concepts without a {args.language!r} term left out "
              f"-> {paths['gazetteer']}, {paths['hierarchy']}", file=sys.stderr)
        return 0
    from clinlinker.kb.stats import kb_stats, render_stats

    stats = kb_stats(args.gazetteer, args.hierarchy, args.links)
    print(render_stats(stats))
    if args.json:
        Path(args.json).write_text(json.dumps(stats, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0
