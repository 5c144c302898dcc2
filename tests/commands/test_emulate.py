"""`scaler emulate`: pods whose real pages move like a real vLLM pod's under the load asked.

In process, the pods run on a ManualClock and are scraped over real HTTP and read with the
scaler's own page reader; the service that reads them shares the clock. The command itself
(signals, --duration, a port in use, refused flags) is run as a user runs it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import yaml

from adapters.formats.vllm import VllmSnapshot, read_vllm
from scaler.commands.cli import main
from scaler.commands.emulate import Emulation, EmulationSetup, emulate
from scaler.commands.emulate_text import snippets
from scaler.config.profiles import default_profile, profile_path
from scaler.service.service import ScalerService
from scaler.sim.emulation.demand import LEVELS, SteadyDemand, TraceDemand, level_demand
from scaler.sim.emulation.vllm_versions import VLLM_VERSIONS
from scaler.sim.traces import read_trace
from tests.clock import ManualClock
from tests.conftest import make_config

PROMPT, OUTPUT = 512.0, 128.0
Start = Callable[..., Awaitable[Emulation]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def start(clock: ManualClock) -> AsyncIterator[Start]:
    """Factory: ``await start(demand=..., **EmulationSetup fields)``, stopped at the end."""
    started: list[Emulation] = []

    async def make(**fields: Any) -> Emulation:
        setup = EmulationSetup(**{"load_text": "test", "port": 0, **fields})
        emulation = Emulation(setup, clock=clock)
        await emulation.start()
        started.append(emulation)
        return emulation

    yield make
    for emulation in started:
        await emulation.stop()


def level(name: str, pods: int = 2) -> SteadyDemand:
    return level_demand(name, default_profile(), pods, PROMPT, OUTPUT)


async def scrape(url: str) -> VllmSnapshot:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        return read_vllm(await resp.text())


async def scrape_all(emulation: Emulation) -> list[VllmSnapshot]:
    return [await scrape(url) for url in emulation.urls]


@pytest.mark.parametrize("version", VLLM_VERSIONS)
async def test_each_pod_serves_a_whole_page_of_its_version_and_model(start, clock, version):
    emulation = await start(demand=level("busy"), vllm_version=version, model="my/model")
    clock.advance(20)
    pages = await scrape_all(emulation)
    assert len(pages) == 2 and len(set(emulation.urls)) == 2
    for page in pages:
        assert page.bad_lines == 0 and page.model_names == {"my/model"}
        assert page.counters["request_success"] > 0 and page.running > 0


async def test_counters_grow_at_the_rate_asked_and_never_go_back(start, clock):
    """10 req/s over 2 pods: each completes 5 a second, whole requests, tokens to match, one
    TTFT observation per completed request."""
    emulation = await start(demand=SteadyDemand(10.0, PROMPT, OUTPUT))
    seen = []
    for _ in range(4):
        clock.advance(30)
        seen.append(await scrape_all(emulation))
    for i, pages in enumerate(seen, start=1):
        for page in pages:
            done = page.counters["request_success"]
            assert done == 5 * 30 * i
            assert page.counters["prompt_tokens"] == done * PROMPT
            assert page.counters["generation_tokens"] == done * OUTPUT
            assert page.histograms["ttft"].count == done
            assert page.histograms["e2e"].count == done
            assert 0 < page.histograms["ttft"].sum / done < 2.0  # far from saturation
    for before, after in itertools.pairwise(seen):
        for a, b in zip(before, after, strict=True):
            assert all(b.counters[k] >= a.counters[k] for k in a.counters)


async def test_overloaded_pods_serve_at_their_limit_with_a_growing_queue_and_full_kv_cache(
        start, clock):
    emulation = await start(demand=level("overloaded"))
    limit = default_profile().saturated_request_rate(PROMPT, OUTPUT)
    clock.advance(30)
    first = await scrape_all(emulation)
    clock.advance(30)
    second = await scrape_all(emulation)
    for a, b in zip(first, second, strict=True):
        assert b.waiting > a.waiting > 0
        # 30% more than the pods serve arrives: the queue grows by that, per pod
        assert b.waiting - a.waiting == pytest.approx(0.3 * limit * 30, abs=2)
        assert a.kv_cache_usage is not None and a.kv_cache_usage >= 0.85
        assert b.counters["request_success"] == pytest.approx(limit * 60, abs=1)
        assert b.running > 100


async def test_idle_pods_run_nothing_and_busy_ones_run_without_a_queue(start, clock):
    idle = await start(demand=level("idle"))
    busy = await start(demand=level("busy"))
    clock.advance(60)
    for page in await scrape_all(idle):
        assert (page.waiting, page.running, page.kv_cache_usage) == (0, 0, 0)
        assert page.counters["request_success"] == 0
    limit = default_profile().saturated_request_rate(PROMPT, OUTPUT)
    for page in await scrape_all(busy):
        assert page.waiting == 0 and page.running > 0
        assert page.counters["request_success"] == pytest.approx(LEVELS["busy"] * limit * 60,
                                                                 abs=1)


async def test_a_trace_plays_its_windows_at_the_speed_asked_and_loops(start, clock, tmp_path):
    """Two 60 s windows (2, then 20 req/s) at 6x: 10 s each, then the first again."""
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp_s,requests_per_s,mean_input_tokens,mean_output_tokens\n"
                     "0,2,300,100\n60,20,300,100\n")
    emulation = await start(demand=TraceDemand(read_trace(trace), speed=6.0), pods=1)
    done = []
    for _ in range(3):
        clock.advance(10)
        done.append((await scrape(emulation.urls[0])).counters["request_success"])
    assert done == [20, 20 + 200, 20 + 200 + 20]


async def test_the_scaler_asks_more_replicas_for_overloaded_pods_than_for_idle_ones(
        start, clock):
    """The real service (default, predictive policy) scrapes the pods on the same clock."""
    service = ScalerService(make_config(timeout_s=1.0), clock=clock, background=False)
    await service.start()
    try:
        asked = {}
        for name in ("idle", "overloaded"):
            emulation = await start(demand=level(name))
            workload = service.resolve("default", name,
                                       {"endpoints": ",".join(emulation.urls)})
            await service.scrape(workload)
            for _ in range(8):  # two minutes of 15 s scrapes
                clock.advance(15)
                await service.scrape(workload)
            decision = service.answer(workload).decision
            assert decision is not None
            asked[name] = decision.desired_replicas
            await emulation.stop()
    finally:
        await service.stop()
    assert asked["overloaded"] > 2 >= asked["idle"], asked


async def test_the_printed_snippets_point_the_scaler_and_prometheus_at_the_pods(start):
    emulation = await start(demand=level("busy"))
    text = snippets(emulation.urls, "127.0.0.1")
    (endpoints,) = [line.split("endpoints: ", 1)[1] for line in text.splitlines()
                    if "endpoints:" in line]
    spec = ScalerService(make_config()).spec_for({"endpoints": yaml.safe_load(endpoints)})
    assert [e.url for e in spec.endpoints] == emulation.urls
    block = text.split("  scrape_configs:", 1)[1].split("\n(")[0]
    (job,) = yaml.safe_load("scrape_configs:" + block)["scrape_configs"]
    configs = job["static_configs"]
    assert [c["targets"] for c in configs] == [[u.split("/")[2]] for u in emulation.urls]
    assert [c["labels"]["pod"] for c in configs] == [e.pod for e in spec.endpoints]


async def test_emulate_prints_each_pod_and_stops_when_asked(clock):
    lines: list[str] = []
    stop = asyncio.Event()
    printed = asyncio.Event()

    def echo(text: str) -> None:
        lines.append(text)
        if text.endswith("Stop with Ctrl-C."):
            printed.set()

    setup = EmulationSetup(demand=level("busy", pods=3), load_text="busy, as asked", pods=3)
    task = asyncio.create_task(emulate(setup, clock=clock, stop=stop, echo=echo))
    await asyncio.wait_for(printed.wait(), 10)
    urls = [line.split(": ", 1)[1].split()[0] for line in lines if line.startswith("pod ")]
    assert len(urls) == 3 and "load: busy, as asked" in lines
    clock.advance(10)
    assert (await scrape(urls[0])).counters["request_success"] > 0
    stop.set()
    await asyncio.wait_for(task, 10)
    assert lines[-1].startswith("stopped after 10.0 s:")
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape(urls[0])


# ----------------------------------------------------------------------- the command itself


async def run_command(*flags: str, until: str | None = None,
                      send: signal.Signals | None = None) -> tuple[int, str, str]:
    """``scaler emulate`` in a real process; ``send`` it a signal once ``until`` is printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scaler", "emulate", *flags, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert proc.stdout is not None
    out = b""
    if until is not None and send is not None:
        async with asyncio.timeout(60):
            while until.encode() not in out:
                line = await proc.stdout.readline()
                assert line, out
                out += line
        url = next(w for w in out.decode().split() if w.endswith("/metrics"))
        assert (await scrape(url)).running >= 0  # the pods serve while it runs
        proc.send_signal(send)
    rest, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), (out + rest).decode(), err.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_it_cleanly(sig):
    code, out, err = await run_command("--port", "0", until="Stop with Ctrl-C.", send=sig)
    assert (code, err) == (0, ""), err  # no traceback, no "Unclosed ..." warning
    assert "stopped after" in out.splitlines()[-1]


async def test_duration_ends_the_run_with_exit_0_and_no_status_lines_off_a_terminal():
    code, out, err = await run_command("--port", "0", "--duration", "0.5", "--load", "idle")
    assert (code, err) == (0, ""), err
    assert out.count("pod emulated-vllm-") == 2 and "asked" not in out
    assert out.splitlines()[-1].startswith("stopped after")


def held_port() -> socket.socket:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def test_a_port_in_use_is_one_line_naming_it_and_exit_1(capsys):
    with held_port() as holder:
        port = holder.getsockname()[1]
        assert main(["emulate", "--port", str(port), "--duration", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"127.0.0.1:{port}" in err and "Traceback" not in err


async def test_a_later_pods_port_in_use_leaves_no_earlier_pod_listening(clock):
    with held_port() as holder:
        taken = holder.getsockname()[1]
        free = _free_port_below(taken)
        setup = EmulationSetup(demand=level("busy", 3), load_text="", pods=3, port=free)
        with pytest.raises(OSError, match=f"127.0.0.1:{taken}"):
            await Emulation(setup, clock=clock).start()
    with socket.socket() as again:  # the first pod's port was let go
        again.bind(("127.0.0.1", free))


def _free_port_below(port: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port - 1))
        except OSError:
            pytest.skip(f"port {port - 1} is in use by something else")
    return port - 1


@pytest.mark.parametrize(("argv", "says"), [
    (["--rate", "5", "--load", "busy"], "argument --load: not allowed with argument --rate"),
    (["--trace", "x.csv", "--rate", "5"], "not allowed with argument --trace"),
    (["--trace", "{trace}", "--prompt-tokens", "100"], "--prompt-tokens: the trace gives"),
    (["--speed", "2"], "argument --speed: plays a trace"),
    (["--load", "busy", "--speed", "2"], "argument --speed: plays a trace"),
    (["--port", "65535", "--pods", "2"], "65536 is past 65535"),
    (["--pods", "0"], "--pods: '0' is out of range: must be >= 1 and <= 256"),
    (["--prompt-tokens", "0"], "must be >= 1 and <= 131072"),
    (["--load", "heavy"], "invalid choice: 'heavy'"),
    (["--vllm-version", "0.5"], "invalid choice: '0.5'"),
    (["--trace", "no-such.csv"], "no-such.csv: cannot read the file"),
    (["--trace", "{bad}"], "line 2, column requests_per_s"),
    (["--profile", "no-such-model"], "neither a shipped profile"),
])
def test_bad_flags_are_one_line_and_exit_2(argv, says, capsys, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp_s,requests_per_s\n0,5\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp_s,requests_per_s\n0,lots\n")
    argv = [a.format(trace=trace, bad=bad) for a in argv]
    assert main(["emulate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert says in err, err


def test_lengths_the_profile_cannot_serve_are_refused(capsys, tmp_path):
    profile = tmp_path / "tiny.yaml"
    text = profile_path("llama-8b-h100").read_text()
    profile.write_text(text.replace("kv_cache_tokens: 440000", "kv_cache_tokens: 1000"))
    assert main(["emulate", "--profile", str(profile), "--prompt-tokens", "2000"]) == 2
    assert "do not fit profile llama-8b-h100's KV cache (1000 tokens)" in \
        capsys.readouterr().err


def test_every_level_is_a_share_of_the_pods_limit():
    profile = default_profile()
    for name, share in LEVELS.items():
        demand = level_demand(name, profile, 3, PROMPT, OUTPUT)
        assert demand.rate == pytest.approx(share * 3 * profile.saturated_request_rate(
            PROMPT, OUTPUT))
    with pytest.raises(ValueError, match="unknown load"):
        level_demand("heavy", profile, 1, PROMPT, OUTPUT)
