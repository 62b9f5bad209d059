"""`clinlinker serve`: the Label Studio ML backend under gunicorn."""

from __future__ import annotations

import logging
import os
import sys

from clinlinker.cli.common import positive_int
from clinlinker.errors import ClinlinkerError

log = logging.getLogger("clinlinker")



def register(sub) -> None:
    p = sub.add_parser("serve", help="run the Label Studio ML backend (gunicorn)")
    p.add_argument("--index", default=os.environ.get("CLINLINKER_INDEX"),
                   help="index directory (default: $CLINLINKER_INDEX; unset: the demo gazetteer, lexical engine)")
    p.add_argument("--host", default=os.environ.get("CLINLINKER_HOST", "127.0.0.1"),
                   help="address to listen on (default: %(default)s, this machine only); any other address needs "
                        "credentials (CLINLINKER_BASIC_AUTH_USER/_PASSWORD and CLINLINKER_PICKER_TOKEN) or "
                        "CLINLINKER_ALLOW_OPEN=1")
    p.add_argument("--port", type=positive_int, default=int(os.environ.get("CLINLINKER_PORT", "9090")))
    p.add_argument("--workers", type=positive_int, default=int(os.environ.get("CLINLINKER_WORKERS", "1")),
                   help="gunicorn worker processes (each loads the model; default 1)")
    p.add_argument("--threads", type=positive_int, default=int(os.environ.get("CLINLINKER_THREADS", "4")))
    p.add_argument("--timeout", type=positive_int, default=120, help="gunicorn worker timeout in seconds")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args) -> int:
    """Exec gunicorn on the backend's app factory; configuration travels in the environment."""
    import shutil

    if args.index:
        os.environ["CLINLINKER_INDEX"] = args.index
    _check_exposure(args.host, os.environ)
    gunicorn = shutil.which("gunicorn") or os.path.join(os.path.dirname(sys.executable), "gunicorn")
    if not os.path.exists(gunicorn):
        raise ClinlinkerError("gunicorn is not installed: pip install -r requirements.txt")
    argv = [gunicorn, "--bind", f"{args.host}:{args.port}", "--workers", str(args.workers), "--threads",
            str(args.threads), "--worker-class", "gthread", "--timeout", str(args.timeout), "--access-logfile", "-",
            "--config", "python:backend.serving.gunicorn_conf", "backend.serving.app:serve_app()"]
    from gunicorn import config as gunicorn_config

    if hasattr(gunicorn_config, "ControlSocketDisable"):  # gunicorn 24+: one control socket per user otherwise,
        argv.insert(-1, "--no-control-socket")  # which a second server on the host would take over
    # /metrics sums every worker's counts: prometheus_client's multiprocess mode, in a fresh directory per server
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="clinlinker-metrics-")
    sys.stdout.flush()
    os.execv(gunicorn, argv)
    return 0  # not reached


def _check_exposure(host: str, env) -> None:
    """The backend receives clinical text: beyond this machine it is served only behind credentials, unless an
    open service is asked for explicitly (and said so loudly)."""
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return
    missing = [name for name in ("CLINLINKER_BASIC_AUTH_USER", "CLINLINKER_BASIC_AUTH_PASSWORD",
                                 "CLINLINKER_PICKER_TOKEN") if not env.get(name, "").strip()]
    if not missing:
        return
    if env.get("CLINLINKER_ALLOW_OPEN", "").strip().lower() in ("1", "true", "yes"):
        log.warning("!! CLINLINKER_ALLOW_OPEN: serving clinical text on %s WITHOUT %s: anyone who reaches this port "
                    "can read the documents' mentions and candidates", host, ", ".join(missing))
        return
    raise ClinlinkerError(f"refusing to listen on {host} without credentials ({', '.join(missing)} unset): the "
                          "backend receives clinical text. Set them (Label Studio sends the Basic-auth pair, the "
                          "labeling config's picker URL carries &token=), listen on 127.0.0.1, or set "
                          "CLINLINKER_ALLOW_OPEN=1 to serve an open service on purpose")
