"""The `inferd` command: the operator's entry point (`inferd --help`).

The exit codes are declared once, below, and shown in every command's help.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inferd.common.errors import ConfigError, InferdError
from inferd.common.settings import Settings, load_settings, read_token_file

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_NOT_READY, EXIT_PREDICTION_FAILED, EXIT_WRONG_VERSION = 4, 5, 6


def _default_url(settings: Settings | None) -> str:
    bind = settings.bind if settings else "127.0.0.1:8000"
    if bind.startswith("unix:"):
        raise ConfigError(f"INFERD_BIND={bind!r} is a unix socket; pass --url")
    host, _, port = bind.rpartition(":")
    if host in ("0.0.0.0", "", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.bind:
        os.environ["INFERD_BIND"] = args.bind
    if args.workers is not None:
        os.environ["INFERD_WORKERS"] = str(args.workers)
    load_settings()  # validate the overrides before exec
    if args.demo:
        _ensure_demo(settings)
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:inferd.gunicorn_conf",
            "inferd.app:app"]
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child: gunicorn becomes this process, so signals from systemd or a
    # terminal reach the master directly, and the demo's imports are released.
    os.execv(sys.executable, argv)
    return EXIT_FAILED  # not reached


def _ensure_demo(settings: Settings) -> None:
    from inferd.commands import demo

    if settings.model_source == "local":
        if not settings.model_path.exists():
            demo.write_local_demo(settings.model_path)
            print(f"inferd: wrote the demo model to {settings.model_path}", file=sys.stderr)
        return
    if demo.has_any_version(settings):
        print(f"inferd: registry already has {settings.mlflow_model_name}; not adding the demo",
              file=sys.stderr)
        return
    published = demo.publish_demo(settings)
    print(f"inferd: registered demo model {published.name} version {published.version} "
          f"(accuracy {published.accuracy:.3f}) in {settings.tracking_uri}", file=sys.stderr)


def cmd_demo_publish(args: argparse.Namespace, settings: Settings) -> int:
    from inferd.commands import demo

    published = demo.publish_demo(settings, n_estimators=args.n_estimators,
                                  max_depth=args.max_depth, seed=args.seed)
    print(json.dumps({"name": published.name, "version": published.version,
                      "accuracy": published.accuracy, "stage": published.stage,
                      "alias": published.alias}))
    return EXIT_OK


def _request(method: str, url: str, headers: dict[str, str] | None = None,
             timeout: float = 330.0) -> tuple[int, Any]:
    import requests

    try:
        resp = requests.request(method, url, headers=headers or {}, timeout=timeout)
    except requests.RequestException as exc:
        print(f"inferd: cannot reach {url}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_UNREACHABLE) from None
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, {"detail": resp.text}


def _admin_headers(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """The admin token header, from --token-file, else ADMIN_API_TOKEN(_FILE). Never
    from the command line, which every user of the host can read in the process list."""
    if getattr(args, "token", None) is not None:
        raise ConfigError("--token was removed: a token on the command line is visible to "
                          "every user of this host in the process list; set ADMIN_API_TOKEN "
                          "or ADMIN_API_TOKEN_FILE, or pass --token-file FILE")
    token = settings.admin_token
    if args.token_file is not None:
        token = read_token_file(args.token_file, "--token-file")
    return {settings.admin_token_header: token} if token else {}


def cmd_reload(args: argparse.Namespace, settings: Settings) -> int:
    if args.direct:
        from inferd.reloading.reload import open_reloader

        result = open_reloader(settings).run()
        print(json.dumps(result.body()))
        return EXIT_OK
    status, body = _request("POST", f"{args.url or _default_url(settings)}/admin/reload",
                            _admin_headers(args, settings))
    print(json.dumps(body))
    ok = status == 200 and body.get("status") in ("reloaded", "noop")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    # With the admin token, /health/ answers its whole report rather than the public view.
    status, body = _request("GET", f"{args.url or _default_url(settings)}/health/",
                            _admin_headers(args, settings), timeout=10)
    print(json.dumps(body, indent=2))
    return EXIT_OK if status == 200 else EXIT_FAILED


def cmd_smoke(args: argparse.Namespace, settings: Settings) -> int:
    from inferd.commands import smoke

    rows = None
    if args.features is not None:
        try:
            rows = json.loads(args.features)
        except ValueError as exc:
            raise ConfigError(f"--features is not JSON: {exc}") from None
    report = smoke.run(args.url or _default_url(settings), args.expect_version, rows,
                       wait=args.wait)
    print(json.dumps(report.body()))
    if report.failed is not None:
        print(f"inferd smoke: {report.failed}: {report.detail}", file=sys.stderr)
    return {
        None: EXIT_OK,
        smoke.UNREACHABLE: EXIT_UNREACHABLE,
        smoke.NOT_READY: EXIT_NOT_READY,
        smoke.PREDICTION: EXIT_PREDICTION_FAILED,
        smoke.VERSION: EXIT_WRONG_VERSION,
        smoke.NO_SAMPLE: EXIT_CONFIG,
    }[report.failed]


def cmd_slots(args: argparse.Namespace, settings: Settings) -> int:
    from inferd.store.layout import StateLayout
    from inferd.store.slots import SlotStore

    store = SlotStore(StateLayout(settings.state_dir), settings.slot_retention)
    current = store.current_generation()
    published = store.published()
    if not published:
        print(f"no slots in {store.layout.slots}")
        return EXIT_OK
    print(f"{'':2}{'GEN':>5}  {'VERSION':<14}{'SOURCE':<8}{'PUBLISHED (UTC)':<21}URI")
    for generation in published:
        try:
            m = store.read_manifest(generation)
        except InferdError as exc:
            print(f"{'*' if generation == current else '':2}{generation:>5}  broken: {exc}")
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(m.get("published_at", 0)))
        print(f"{'*' if generation == current else '':2}{generation:>5}  "
              f"{str(m.get('version')):<14}{m.get('descriptor', {}).get('source', '?'):<8}"
              f"{when:<21}{m.get('uri')}")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from inferd.reloading.reload import open_reloader

    result = open_reloader(settings).rollback()
    print(json.dumps(result.body()))
    return EXIT_OK


DESCRIPTION = """\
Serve a scikit-learn or MLflow model over HTTP, and manage the model it serves.

Settings come from the environment (MODEL_SOURCE, MLFLOW_MODEL_NAME, INFERD_STATE_DIR,
...; the README lists them all). Commands that talk to a running server find it at
INFERD_BIND unless given --url."""

_EXIT_MEANINGS = (
    (EXIT_OK, "done (reloaded or nothing to do, served, listed)"),
    (EXIT_FAILED, "the operation failed (the server answered an error, the reload failed)"),
    (EXIT_CONFIG, "a setting or an argument is not valid"),
    (EXIT_UNREACHABLE, "the server could not be reached"),
    (EXIT_NOT_READY, "smoke: /health/ is not ready"),
    (EXIT_PREDICTION_FAILED, "smoke: the sample prediction failed"),
    (EXIT_WRONG_VERSION, "smoke: the server does not serve the expected version"),
)
EXIT_CODES = "exit codes:\n" + "\n".join(f"  {code}  {what}" for code, what in _EXIT_MEANINGS)


def _command(sub: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=description, epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def _token_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help="file holding the admin token (default: ADMIN_API_TOKEN or "
                             "ADMIN_API_TOKEN_FILE; never on the command line)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferd", description=DESCRIPTION, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(sub, "serve", "run the server (gunicorn with inferd's settings)",
                     "Run gunicorn with inferd's workers in the foreground. With no model "
                     "published yet, the first one is fetched from the configured source.")
    serve.add_argument("--bind", help="HOST:PORT to listen on (default: INFERD_BIND)")
    serve.add_argument("--workers", type=int,
                       help="worker processes (default: INFERD_WORKERS)")
    serve.add_argument("--demo", action="store_true",
                       help="first register a demo iris model if the registry has none")
    serve.set_defaults(func=cmd_serve)

    demo = _command(sub, "demo", "try inferd with a demo iris model",
                    "Demo model helpers, to try a reload without a model of your own.")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    publish = _command(demo_sub, "publish", "train and register the next demo version",
                       "Train an iris forest and register it as the next version of "
                       "MLFLOW_MODEL_NAME (moving the stage or alias to it); then run "
                       "inferd reload to serve it.")
    publish.add_argument("--n-estimators", type=int, default=100, help="trees (default 100)")
    publish.add_argument("--max-depth", type=int, default=None, help="tree depth limit")
    publish.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    publish.set_defaults(func=cmd_demo_publish)

    reload = _command(sub, "reload", "make the server serve the model its source names now",
                      "Ask the running server to fetch, validate and serve the model the "
                      "source names now (POST /admin/reload). If the new model fails, the "
                      "old one keeps serving and this command exits 1.")
    reload.add_argument("--url", help="server URL (default: from INFERD_BIND)")
    _token_file_option(reload)
    # Removed (the process list shows it): still parsed, to say so and what to use.
    reload.add_argument("--token", help=argparse.SUPPRESS)
    reload.add_argument("--direct", action="store_true",
                        help="reload on this host's state directory without the server "
                             "(its workers switch within 50 ms)")
    reload.set_defaults(func=cmd_reload)

    status = _command(sub, "status", "show the server's health and served model",
                      "Print the running server's /health/ answer; exit 0 when it is ready.")
    status.add_argument("--url", help="server URL (default: from INFERD_BIND)")
    _token_file_option(status)
    status.set_defaults(func=cmd_status)

    smoke = _command(sub, "smoke", "post-deploy check: ready, predicts, right version",
                     "Check a deployed server: /health/ is ready, a sample prediction "
                     "succeeds, and (with --expect-version) the expected version serves.")
    smoke.add_argument("--url", help="server URL (default: from INFERD_BIND)")
    smoke.add_argument("--expect-version", help="fail unless this model version serves")
    smoke.add_argument("--features", help='sample rows as JSON, e.g. \'[[5.1, 3.5, 1.4, 0.2]]\' '
                       "(default: one row of zeros of the model's width)")
    smoke.add_argument("--wait", type=float, default=0.0,
                       help="seconds to keep polling /health/ until ready (default 0)")
    smoke.set_defaults(func=cmd_smoke)

    slots = _command(sub, "slots", "list the model slots on this host",
                     "List the published slots in INFERD_STATE_DIR: generation, version, "
                     "and which one is current.")
    slots.set_defaults(func=cmd_slots)
    rollback = _command(sub, "rollback", "serve the previous slot's model again",
                        "Make the previous slot's model current again on this host's state "
                        "directory, without contacting the source; the workers switch within "
                        "50 ms.")
    rollback.set_defaults(func=cmd_rollback)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        from inferd.common import logs

        logs.configure(settings.log_level)
        return int(args.func(args, settings))
    except ConfigError as exc:
        print(f"inferd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except InferdError as exc:
        print(f"inferd: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
