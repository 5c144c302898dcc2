"""`scaler emulate`'s command line: the flags, what involves several of them, the demand.

Each value is checked while parsing (``scaler.commands.flag_types``), so a bad one is one
line naming the flag, the value and the range, exit 2; ``check_emulate_flags`` then checks
what involves several flags (one kind of load, lengths the profile can serve, the last pod's
port) and reads the trace, with the same one-line refusal.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from scaler.commands.flag_types import FlagType, checked, non_negative, port, positive
from scaler.commands.flags import profile_flag
from scaler.config.profiles import DEFAULT_PROFILE
from scaler.sim.emulation.demand import LEVELS, Demand, SteadyDemand, TraceDemand, level_demand
from scaler.sim.emulation.vllm_metrics import DEFAULT_MODEL
from scaler.sim.emulation.vllm_versions import VLLM_VERSIONS
from scaler.sim.traces import DEFAULT_MEAN_OUTPUT, DEFAULT_MEAN_PROMPT, TraceError, read_trace

__all__ = ["MAX_PODS", "MAX_TOKENS", "add_emulate_arguments", "demand_of"]

MAX_PODS = 256
MAX_TOKENS = 131072  # the emulated engines' max_model_len
DEFAULT_PORT = 8000  # vLLM's own default port
DEFAULT_LOAD = "busy"


def _within(low: int, high: int, what: str) -> FlagType:
    return checked(int, lambda v: None if low <= v <= high else
                   f"must be >= {low} and <= {high}", f"{what} {low}-{high}")


def add_emulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pods", type=_within(1, MAX_PODS, "a whole number of pods"),
                        default=2, metavar="N", help="emulated vLLM pods to start")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; anything beyond loopback (e.g. 0.0.0.0, "
                             "for a Prometheus or KEDA in a container) is your explicit choice")
    parser.add_argument("--port", type=port, default=DEFAULT_PORT, metavar="P",
                        help="the first pod's port; the others on P+1, P+2, ...; 0 = any free "
                             "ports")
    parser.add_argument("--vllm-version", choices=VLLM_VERSIONS, default=VLLM_VERSIONS[-1],
                        help="the vLLM release whose /metrics layout the pods serve")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME",
                        help="the model_name label on every series")
    parser.add_argument("--profile", type=profile_flag, default=DEFAULT_PROFILE,
                        help="replica profile the pods serve like: a shipped name or a YAML "
                             "file")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--load", choices=tuple(LEVELS),
                      help="a named level, as a share of what the pods serve at most: idle 0, "
                           "busy 60%%, overloaded 130%% with a queue that keeps growing "
                           f"(default: {DEFAULT_LOAD}, unless --rate or --trace)")
    load.add_argument("--rate", type=non_negative(), metavar="R",
                      help="requests/s over all pods, steady")
    load.add_argument("--trace", type=Path, metavar="CSV",
                      help="a trace as `scaler replay --trace` reads it, played from its start "
                           "and looped")
    parser.add_argument("--prompt-tokens", type=_within(1, MAX_TOKENS, "a whole number"),
                        metavar="N", help="prompt tokens per request, with --rate or --load "
                                          f"(default: {DEFAULT_MEAN_PROMPT:g})")
    parser.add_argument("--output-tokens", type=_within(1, MAX_TOKENS, "a whole number"),
                        metavar="N", help="output tokens per request, with --rate or --load "
                                          f"(default: {DEFAULT_MEAN_OUTPUT:g})")
    parser.add_argument("--speed", type=positive(), metavar="X",
                        help="with --trace: trace seconds played per second (default: 1)")
    parser.add_argument("--duration", type=positive(), metavar="S",
                        help="stop after S seconds and exit 0 (default: until Ctrl-C or "
                             "SIGTERM)")
    parser.set_defaults(check=functools.partial(check_emulate_flags, parser))


def check_emulate_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What involves several flags; ``parser.error`` (one line, exit 2) on the first problem.

    Leaves ``args.demand`` (a Demand) and ``args.load_text`` (what it is, in words) set.
    """
    if args.trace is not None:
        for flag in ("prompt_tokens", "output_tokens"):
            if getattr(args, flag) is not None:
                parser.error(f"argument --{flag.replace('_', '-')}: the trace gives each "
                             "window's lengths; drop it with --trace")
    elif args.speed is not None:
        parser.error("argument --speed: plays a trace; give --trace CSV or drop --speed")
    last = args.port + args.pods - 1
    if args.port and last > 65535:
        parser.error(f"argument --port: {args.port} + {args.pods} pods - 1 = {last} is past "
                     "65535; give a lower --port or 0 (any free ports)")
    try:
        args.demand, args.load_text = demand_of(args)
    except (TraceError, OSError, ValueError) as exc:
        parser.error(f"argument --{'trace' if args.trace else 'prompt-tokens'}: {exc}")


def demand_of(args: argparse.Namespace) -> tuple[Demand, str]:
    """The demand the flags ask for, and a few words saying what it is."""
    profile = args.profile
    if args.trace is not None:
        try:
            trace = read_trace(args.trace)
        except OSError as exc:
            raise OSError(f"{args.trace}: cannot read the file: {exc.strerror}") from exc
        played = TraceDemand(trace, speed=args.speed or 1.0)
        return played, (f"trace {args.trace} ({len(played.trace)} windows of "
                        f"{played.trace.step_s:g} s, peak {played.peak_rate:.1f} req/s), at "
                        f"{played.speed:g}x, looping every {played.loop_s:.4g} s")
    prompt = float(args.prompt_tokens or DEFAULT_MEAN_PROMPT)
    output = float(args.output_tokens or DEFAULT_MEAN_OUTPUT)
    per_pod = profile.saturated_request_rate(prompt, output)
    if per_pod <= 0:
        raise ValueError(f"{prompt:g} + {output:g} tokens do not fit profile {profile.name}'s "
                         f"KV cache ({profile.kv_cache_tokens} tokens)")
    capacity = f"{args.pods * per_pod:.1f} req/s at most at {prompt:g} + {output:g} tokens"
    if args.rate is not None:
        return (SteadyDemand(args.rate, prompt, output),
                f"{args.rate:g} req/s over {args.pods} pods (they serve {capacity})")
    level = args.load or DEFAULT_LOAD
    demand = level_demand(level, profile, args.pods, prompt, output)
    return demand, (f"{level}: {demand.rate:.1f} req/s over {args.pods} pods "
                    f"({LEVELS[level]:.0%} of the {capacity})")
