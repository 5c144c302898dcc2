"""`scaler emulate`: emulated vLLM pods under a chosen load, for a real Prometheus or KEDA.

Starts ``--pods`` real HTTP servers (``EmulatedVllmPod``), each serving a real-format vLLM
``/metrics`` page of ``--vllm-version``, and keeps them serving the load the flags ask for
(:mod:`scaler.commands.emulate_flags`) as time passes: a fluid fleet of ``--profile``
replicas (:class:`~scaler.sim.emulation.live_fleet.LiveFleet`) is brought up to the clock's
time before every page is rendered, so counters grow at the rate served and the gauges
follow the load whenever Prometheus or the scaler scrapes. Time is the injected ``clock``
(tests move a ``ManualClock`` and scrape; nothing sleeps).

At start it prints one line per pod and how to point the scaler and Prometheus at them; on a
terminal a status line every ``STATUS_EVERY_S``; it stops on Ctrl-C or SIGTERM (or after
``--duration``), closing every pod. A port it cannot have is one line naming it, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from scaler.clock import Clock, SystemClock
from scaler.commands.emulate_text import pod_line, snippets, status_line
from scaler.model.profile import ReplicaProfile
from scaler.sim.emulation.demand import Demand
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.live_fleet import LiveFleet
from scaler.sim.emulation.pod_server import EmulatedVllmPod

__all__ = ["Emulation", "EmulationSetup", "emulate", "run"]

STATUS_EVERY_S = 10.0  # a status line this often, on a terminal
REFRESH_EVERY_S = 1.0  # the fleet is brought up to date at least this often


@dataclass(frozen=True)
class EmulationSetup:
    """What to emulate: the pods, where they listen, what they serve."""

    demand: Demand
    load_text: str
    pods: int = 2
    host: str = "127.0.0.1"
    port: int = 0
    vllm_version: str = "0.12"
    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    profile: ReplicaProfile | None = None  # None: the default profile


class Emulation:
    """The pods and the fleet behind their pages, on ``clock``."""

    def __init__(self, setup: EmulationSetup, *, clock: Clock) -> None:
        from scaler.config.profiles import default_profile

        self.setup = setup
        self.clock = clock
        self.profile = setup.profile or default_profile()
        engines = [EngineState(bucket_version=setup.vllm_version) for _ in range(setup.pods)]
        self.fleet = LiveFleet(engines, setup.demand, self.profile)
        self.pods = [EmulatedVllmPod([engine], version=setup.vllm_version,
                                     model_name=setup.model, host=setup.host,
                                     port=setup.port + i if setup.port else 0,
                                     loopback_only=False)
                     for i, engine in enumerate(engines)]
        self.started_s = math.nan

    @property
    def elapsed_s(self) -> float:
        return self.clock.monotonic() - self.started_s

    async def start(self) -> None:
        """Listen on every pod's port; OSError naming the port (nothing left open) if one
        cannot be had."""
        for pod in self.pods:
            try:
                await pod.start()
            except OSError as exc:
                await self.stop()
                port = pod.port or self.setup.port
                raise OSError(f"cannot listen on {self.setup.host}:{port}: "
                              f"{exc.strerror or exc}; give another --port, or 0 for any free "
                              "ports") from exc
            pod.refresh = self.refresh
        self.started_s = self.clock.monotonic()

    def refresh(self) -> None:
        """Serve the load up to now."""
        self.fleet.advance_to(self.elapsed_s)

    async def stop(self) -> None:
        await asyncio.gather(*(pod.stop() for pod in self.pods))

    @property
    def urls(self) -> list[str]:
        return [pod_url(self.setup.host, pod.port) for pod in self.pods]


def pod_url(host: str, port: int) -> str:
    """The ``/metrics`` URL of a pod on ``host`` as a client here would use it."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/metrics"


async def emulate(setup: EmulationSetup, *, clock: Clock | None = None,
                  stop: asyncio.Event | None = None, duration_s: float | None = None,
                  echo: Callable[[str], None] | None = None, on_terminal: bool = False,
                  handle_signals: bool = False) -> None:
    """Run until ``stop`` is set (or a signal, with ``handle_signals``) or ``duration_s``."""
    echo = echo or functools.partial(print, flush=True)  # a pipe or file sees each line
    emulation = Emulation(setup, clock=clock or SystemClock())
    await emulation.start()
    stop = stop or asyncio.Event()
    if handle_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
    try:
        for i, url in enumerate(emulation.urls):
            echo(pod_line(i, url, setup))
        echo(f"load: {setup.load_text}")
        echo(snippets(emulation.urls, setup.host))
        await _serve(emulation, stop, duration_s, echo if on_terminal else None)
    finally:
        await emulation.stop()
    emulation.refresh()
    echo(f"stopped after {emulation.elapsed_s:.1f} s: "
         f"{emulation.fleet.status().completed} requests completed per pod")


async def _serve(emulation: Emulation, stop: asyncio.Event, duration_s: float | None,
                 status: Callable[[str], None] | None) -> None:
    """Keep the fleet up to date until ``stop`` or ``duration_s``; status lines if asked."""
    next_status = STATUS_EVERY_S
    while not stop.is_set():
        remaining = math.inf if duration_s is None else duration_s - emulation.elapsed_s
        if remaining <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=min(REFRESH_EVERY_S, remaining))
        emulation.refresh()
        if status is not None and emulation.elapsed_s >= next_status:
            next_status += STATUS_EVERY_S
            status(status_line(emulation.fleet.status()))


def run(args: argparse.Namespace) -> int:
    setup = EmulationSetup(demand=args.demand, load_text=args.load_text, pods=args.pods,
                           host=args.host, port=args.port, vllm_version=args.vllm_version,
                           model=args.model, profile=args.profile)
    try:
        asyncio.run(emulate(setup, duration_s=args.duration, on_terminal=sys.stdout.isatty(),
                            handle_signals=True))
    except OSError as exc:
        print(f"scaler emulate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130
    return 0
