"""Command line: ``scaler <command>``; ``scaler --help`` lists the commands."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from scaler.commands import check_scaledobject, settings
from scaler.commands.flag_types import Parser, non_negative, port, positive
from scaler.config.load import ConfigError, load_config, read_config
from scaler.config.settings import ServiceConfig

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        check = getattr(args, "check", None)
        if check is not None:  # what involves several flags: parser.error, one line, exit 2
            check(args)
    except SystemExit as exc:  # a refused flag (2) or --help (0): the code, as a return
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.run(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="scaler", description="Predictive KEDA external scaler for LLM inference.")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the KEDA external scaler (gRPC + HTTP)")
    serve.add_argument("--config", metavar="PATH",
                       help="YAML settings file or ConfigMap manifest (default: built-in)")
    serve.add_argument("--grpc-port", type=port,
                       help="gRPC port, 0 = any free one (default: server.grpc_port, 9090)")
    serve.add_argument("--http-port", type=port,
                       help="HTTP port, 0 = any free one (default: server.http_port, 8080)")
    serve.add_argument("--host", help="listen address (default: server.host, 0.0.0.0)")
    serve.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                       help="log level")
    serve.set_defaults(run=_serve)

    validate = commands.add_parser(
        "validate-config", help="check a settings file; exit 1 naming each bad key",
        description="Check a settings file (the config.yaml document, or the ConfigMap manifest"
                    " holding it in data[\"config.yaml\"]) as the service would read it; exit 1"
                    " naming each bad key and each rule between keys that is broken.")
    validate.add_argument("path", help="YAML settings file or ConfigMap manifest")
    validate.set_defaults(run=_validate)

    from scaler.commands.flags import add_replay_arguments

    replay = commands.add_parser(
        "replay", help="what-if: play a trace through a simulated fleet under one policy")
    add_replay_arguments(replay, bench=False)
    replay.set_defaults(run=_replay)

    bench = commands.add_parser(
        "bench", help="cost at SLO: sweep each policy's knob on a trace, compare to the oracle")
    add_replay_arguments(bench, bench=True)
    bench.set_defaults(run=_bench)

    tryout = commands.add_parser(
        "try", help="emulated vLLM pods + the scaler + a KEDA-like client, on this machine")
    tryout.set_defaults(run=_try)

    demo = commands.add_parser(
        "demo", help="the service scaling emulated vLLM pods via KEDA + HPA, an hour in a minute")
    demo.add_argument("--seconds", type=positive(), default=60.0,
                      help="wall-clock seconds to run")
    demo.add_argument("--speed", type=positive(), default=60.0,
                      help="simulated seconds per wall second (60: an hour a minute)")
    demo.add_argument("--seed", type=non_negative(int, "an integer"), default=0,
                      help="synthetic workload seed")
    demo.add_argument("--out", default="out/demo", metavar="DIR", help="output directory")
    demo.set_defaults(run=_demo)

    export = commands.add_parser(
        "export-trace", help="a workload's request history from Prometheus, as a replay trace")
    export.add_argument("--prometheus", required=True, metavar="URL",
                        help="Prometheus base URL, e.g. http://prometheus.monitoring:9090")
    export.add_argument("--selector", required=True,
                        help="label matchers of the workload's vLLM series, e.g. "
                             "'namespace=\"llm\",pod=~\"llama-8b-.*\"'")
    export.add_argument("--days", type=positive(), default=14.0,
                        help="history to read, days back from now")
    export.add_argument("--step", type=positive(), default=600.0,
                        help="window, seconds (600 as the shared traces)")
    export.add_argument("--out", required=True, metavar="CSV", help="trace file to write")
    export.set_defaults(run=_export_trace)

    from scaler.commands.emulate_flags import add_emulate_arguments

    emulate = commands.add_parser(
        "emulate", help="emulated vLLM pods under a chosen load, for a real Prometheus or KEDA",
        description="Start emulated vLLM pods (real HTTP servers serving real-format vLLM "
                    "/metrics pages) that serve a steady load, a named level or a trace as "
                    "time passes, until Ctrl-C or SIGTERM; point a Prometheus, `scaler serve` "
                    "or KEDA at them.")
    add_emulate_arguments(emulate)
    emulate.set_defaults(run=_emulate)

    check_scaledobject.add_parser(commands)
    settings.add_parser(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config, text = read_config(args.config) if args.config else (ServiceConfig(), None)
    except ConfigError as exc:
        print(f"scaler: {exc}", file=sys.stderr)
        return 1
    overrides = {k: v for k, v in (("grpc_port", args.grpc_port), ("http_port", args.http_port),
                                   ("host", args.host)) if v is not None}
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, **overrides))
    from scaler.commands.serve import serve  # imported here: grpc start-up cost only for `serve`

    try:
        asyncio.run(serve(config, Path(args.config) if args.config else None, text))
    except (OSError, ConfigError) as exc:  # a port in use, a TLS file gone since the check
        print(f"scaler serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _replay(args: argparse.Namespace) -> int:
    from scaler.commands.replay import run_replay

    return run_replay(args)


def _bench(args: argparse.Namespace) -> int:
    from scaler.commands.bench import run_bench

    return run_bench(args)


def _try(args: argparse.Namespace) -> int:
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    from scaler.commands.tryout import run_tryout

    return asyncio.run(run_tryout())


def _emulate(args: argparse.Namespace) -> int:
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    from scaler.commands.emulate import run

    return run(args)


def _demo(args: argparse.Namespace) -> int:
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    from pathlib import Path

    from scaler.commands.demo import run_demo

    try:
        asyncio.run(run_demo(wall_s=args.seconds, speed=args.speed, seed=args.seed,
                             out=Path(args.out)))
    except ValueError as exc:
        print(f"scaler demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scaler demo: interrupted; pods and service stopped", file=sys.stderr)
        return 130
    return 0


def _export_trace(args: argparse.Namespace) -> int:
    import time

    from adapters.sources.prometheus import PrometheusError
    from scaler.commands.export_trace import export_trace, write_trace

    end = time.time()
    try:
        rows = asyncio.run(export_trace(args.prometheus, args.selector,
                                        start_s=end - args.days * 86400, end_s=end,
                                        step_s=args.step))
    except PrometheusError as exc:
        print(f"scaler export-trace: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(f"scaler export-trace: Prometheus has no vllm:request_success_total for "
              f"{{{args.selector}}} in the last {args.days:g} days; check the selector",
              file=sys.stderr)
        return 1
    write_trace(rows, Path(args.out))
    peak = max(r.requests_per_s for r in rows)
    print(f"{args.out}: {len(rows)} windows of {args.step:g} s, peak {peak:.1f} req/s\n"
          f"next: scaler bench --trace {args.out} --policy predictive --policy oracle")
    return 0


def _validate(args: argparse.Namespace) -> int:
    try:
        load_config(args.path)
    except ConfigError as exc:
        print(f"scaler: {exc}", file=sys.stderr)
        return 1
    print(f"{args.path}: OK")
    return 0
