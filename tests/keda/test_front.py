"""The front process (``server.front_process``): its decision table, and the process itself.

The table is driven over a real socket pair by the test, playing the scaling process, on an
injected clock. The process tests run the real ``start_app`` with a front process; the KEDA
contract and TLS suites (``test_grpc.py``, ``test_tls.py``) also run in this mode.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest

from scaler.commands.serve import RunningApp, start_app
from scaler.keda.front.channel import Channel, Message
from scaler.keda.front.child import SCALING_NICE, FrontChild
from scaler.keda.front.link import FrontLink, FrontProcess
from scaler.keda.front.server import DecisionTable, run_front
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.keda.servicer import INVALID, OK, UNAVAILABLE, Verdict, serve_keda
from scaler.service.service import ScalerService
from scaler.sim.emulation.engine_state import EngineState
from tests.clock import ManualClock
from tests.conftest import make_config, scrape_all, wait_until

NS, NAME = "llm", "llama-8b"


def ref(url: str = "http://127.0.0.1:1/metrics", **extra: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=NAME, namespace=NS, scalerMetadata={"endpoints": url, **extra})


# -- the decision table, with the test as the scaling process -------------------------------


@pytest.fixture
async def line() -> AsyncIterator[tuple[Channel, Channel]]:
    """(the front's end, the scaling process's end) of a real socket pair."""
    a, b = socket.socketpair()
    front, back = await Channel.over(a), await Channel.over(b)
    yield front, back
    await front.close()
    await back.close()


@pytest.fixture
async def table(line: tuple[Channel, Channel],
                clock: ManualClock) -> AsyncIterator[DecisionTable]:
    front, _ = line
    table = DecisionTable(front, idle_s=60.0, clock=clock, ask_timeout_s=2.0)
    task = asyncio.create_task(_apply_all(front, table))
    yield table
    task.cancel()


async def _apply_all(channel: Channel, table: DecisionTable) -> None:
    while (message := await channel.receive()) is not None:
        table.apply(message)


def push(back: Channel, ref_id: int, verdict: Verdict, valid_for_s: float) -> None:
    back.send({"t": "verdicts", "items": [[ref_id, verdict.to_json(), valid_for_s]]})


async def next_message(back: Channel) -> Message:
    message = await asyncio.wait_for(back.receive(), 5)
    assert message is not None
    return message


OK_3 = Verdict("desired-replicas", OK, "", 3, True)


async def known(table: DecisionTable, back: Channel, request: pb.ScaledObjectRef,
                verdict: Verdict = OK_3, valid_for_s: float = 10.0) -> int:
    """A first call, its ask answered with ``verdict``; the id the front gave the object."""
    call = asyncio.ensure_future(table.verdict(request))
    ask = await next_message(back)
    assert ask["t"] == "ask"
    push(back, ask["id"], verdict, valid_for_s)
    assert await call == verdict
    return int(ask["id"])


async def test_an_unknown_object_is_asked_for_once_and_concurrent_calls_share_it(table, line):
    _, back = line
    calls = [asyncio.ensure_future(table.verdict(ref())) for _ in range(5)]
    ask = await next_message(back)
    assert ask == {"t": "ask", "id": ask["id"], "namespace": NS, "name": NAME,
                   "metadata": {"endpoints": "http://127.0.0.1:1/metrics"}, "held": False}
    push(back, ask["id"], OK_3, 10.0)
    assert await asyncio.gather(*calls) == [OK_3] * 5
    back.send({"t": "sync", "n": 1})
    report = await next_message(back)  # had a second ask been sent, it would come first
    assert report["t"] == "asked" and report["ids"] == [ask["id"]]


async def test_a_pushed_verdict_is_answered_from_memory_until_it_expires(table, line, clock):
    _, back = line
    ref_id = await known(table, back, ref())
    newer = Verdict("desired-replicas", OK, "", 5, True)
    push(back, ref_id, newer, 10.0)
    await wait_until(lambda: len(table) == 1 and _answer_now(table) == newer)
    clock.advance(9.9)
    assert await table.verdict(ref()) == newer  # still fresh: no ask
    clock.advance(0.2)
    again = asyncio.ensure_future(table.verdict(ref()))
    ask_again = await next_message(back)  # expired: asked for once more
    assert ask_again["t"] == "ask" and ask_again["id"] == ref_id
    stale = Verdict("desired-replicas", UNAVAILABLE, "metrics are stale")
    push(back, ref_id, stale, 5.0)
    assert await again == stale


def _answer_now(table: DecisionTable) -> Verdict | None:
    entries = list(table._entries.values())
    return entries[0].verdict if entries else None


async def test_no_answer_in_time_is_unavailable_naming_the_object_and_asks_again(line, clock):
    front, back = line
    table = DecisionTable(front, idle_s=60.0, clock=clock, ask_timeout_s=0.05)
    verdict = await table.verdict(ref())
    assert verdict.code == UNAVAILABLE
    assert verdict.message == (f"{NS}/{NAME}: the scaling process did not answer within 0.05 s "
                               "(overloaded or restarting? see its log); KEDA retries")
    await table.verdict(ref())
    assert [(await next_message(back))["t"] for _ in range(2)] == ["ask", "ask"]


async def test_bad_metadata_stays_invalid_argument_while_the_scaling_process_is_silent(
        line, clock):
    front, back = line
    table = DecisionTable(front, idle_s=60.0, clock=clock, ask_timeout_s=0.05)
    task = asyncio.create_task(_apply_all(front, table))
    call = asyncio.ensure_future(table.verdict(ref(targetKvCacheUsage="80%")))
    ask = await next_message(back)
    bad = Verdict("", INVALID, "scalerMetadata key 'targetKvCacheUsage' has value '80%'")
    push(back, ask["id"], bad, 5.0)
    assert await call == bad
    clock.advance(6.0)  # expired, and no answer to the new ask
    assert await table.verdict(ref(targetKvCacheUsage="80%")) == bad
    task.cancel()


async def test_a_stream_asks_again_as_held_so_it_never_updates_the_metadata(table, line):
    _, back = line
    stream = table.verdicts(ref())
    first = asyncio.ensure_future(anext(stream))
    ask = await next_message(back)
    assert ask["held"] is False  # opening a stream registers, as a call does
    push(back, ask["id"], OK_3, 10.0)
    assert await first == OK_3
    second = asyncio.ensure_future(anext(stream))
    push(back, ask["id"], OK_3, 0.0)  # a change that is at once past its freshness
    again = await next_message(back)
    assert (again["t"], again["id"], again["held"]) == ("ask", ask["id"], True)
    push(back, ask["id"], OK_3, 10.0)
    assert await second == OK_3
    await stream.aclose()


async def test_an_unanswered_first_call_with_a_metric_name_is_unavailable_not_invalid(
        line, clock):
    """KEDA's GetMetrics names the metric; with no answer yet there is nothing to compare it
    with, and UNAVAILABLE (retry, then fallback) is the truth, not bad metadata."""
    front, _ = line
    table = DecisionTable(front, idle_s=60.0, clock=clock, ask_timeout_s=0.05)
    server, port = await serve_keda(table, host="127.0.0.1", port=0, credentials=None)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await keda.GetMetrics(pb.GetMetricsRequest(
                    scaledObjectRef=ref(), metricName="desired-replicas"), timeout=5)
    finally:
        await server.stop(0)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "did not answer within 0.05 s" in (info.value.details() or "")


async def test_reports_say_what_was_asked_what_streams_hold_and_the_calls(table, line, clock):
    _, back = line
    table.record("GetMetrics", grpc.StatusCode.OK, 0.002)
    table.record("GetMetrics", grpc.StatusCode.OK, 0.004)
    table.record("StreamIsActive", grpc.StatusCode.OK, None)
    ref_id = await known(table, back, ref())
    stream = table.verdicts(ref("http://127.0.0.1:2/metrics"))
    stream_call = asyncio.ensure_future(anext(stream))
    stream_ask = await next_message(back)
    push(back, stream_ask["id"], OK_3, 100.0)
    await stream_call
    push(back, stream_ask["id"], OK_3, 100.0)  # a change: the stream looks again, held
    await anext(stream)
    report = table.report()
    assert report == {"t": "asked", "ids": [ref_id, stream_ask["id"]],
                      "held": [stream_ask["id"]],
                      "calls": [["GetMetrics", "OK", [0.002, 0.004]],
                                ["StreamIsActive", "OK", [None]]]}
    assert table.report() == {"t": "asked", "ids": [], "held": [], "calls": []}
    await stream.aclose()


async def test_objects_not_asked_about_for_the_idle_time_are_forgotten(table, line, clock):
    _, back = line
    ref_id = await known(table, back, ref(), valid_for_s=1000.0)
    table.report()
    clock.advance(59.0)
    table.report()
    assert len(table) == 1
    clock.advance(2.0)
    table.report()
    assert len(table) == 0
    call = asyncio.ensure_future(table.verdict(ref()))
    again = await next_message(back)  # known no more: asked with its full identity
    assert again["t"] == "ask" and again["id"] != ref_id and again["name"] == NAME
    call.cancel()


# -- the scaling process's side, with the test as the front ---------------------------------


async def test_the_scaling_side_answers_asks_pushes_decisions_and_survives_a_bad_message(
        service: ScalerService, pods, line, caplog):
    front, back = line
    link = FrontLink(service, back)
    service.decision_listeners.append(link.on_decision)
    task = asyncio.create_task(link.run())
    pod = await pods()
    pod.engines = [EngineState(waiting=11)]
    front.send({"t": "asked", "ids": []})  # no "held": a bug on either side, logged
    front.send({"t": "ask", "id": 7, "namespace": NS, "name": NAME,
                "metadata": {"endpoints": pod.url, "policy": "reactive"}})
    (ref_id, first, valid_for_s), = (await next_message(front))["items"]
    assert (ref_id, first[1], valid_for_s) == (7, "UNAVAILABLE", 5.0)
    assert "no scrape has completed yet" in first[2]
    assert "message {'t': 'asked', 'ids': []} from the front process failed" in caplog.text
    (workload,) = service.registry
    await service.scrape(workload)  # a decision: pushed without being asked
    pushed = await next_message(front)
    assert pushed["items"] == [[7, ["desired-replicas", "OK", "", 3, True],
                                service.config.scrape.stale_after_s]]
    task.cancel()


async def test_a_held_streams_ask_never_rolls_newer_metadata_back(service, pods, line):
    front, back = line
    link = FrontLink(service, back)
    task = asyncio.create_task(link.run())
    old, new = await pods(), await pods()

    async def ask(ref_id: int, url: str, held: bool) -> None:
        front.send({"t": "ask", "id": ref_id, "namespace": NS, "name": NAME,
                    "metadata": {"endpoints": url}, "held": held})
        await next_message(front)

    await ask(1, old.url, held=False)  # the stream opens with the old metadata
    await ask(2, new.url, held=False)  # a call with the ScaledObject's new metadata
    (workload,) = service.registry
    assert list(workload.pods) == [new.url]
    await ask(1, old.url, held=True)  # the stream's verdict ran out: it asks again
    assert list(workload.pods) == [new.url]
    await ask(1, old.url, held=False)  # a call with old metadata does update, as in one process
    assert list(workload.pods) == [old.url]
    task.cancel()


# -- the process ------------------------------------------------------------------------------


@pytest.fixture
async def front_app(clock: ManualClock) -> AsyncIterator[RunningApp]:
    config = make_config({"front_process": True}, timeout_s=1.0, stale_after_s=0.3)
    running = await start_app(config, ScalerService(config, clock=clock, background=False))
    yield running
    await running.stop()


async def desired(app: RunningApp, request: pb.ScaledObjectRef) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        answer = await keda.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=request),
                                       timeout=5)
        return int(answer.metricValues[0].metricValue)


async def status_of(app: RunningApp, request: pb.ScaledObjectRef) -> grpc.StatusCode:
    try:
        await desired(app, request)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def front_of(app: RunningApp) -> FrontProcess:
    assert isinstance(app.grpc_server, FrontProcess)
    return app.grpc_server


async def answering_workload(app: RunningApp, pods) -> pb.ScaledObjectRef:
    """A workload registered through the front and decided: 11 waiting, so 3 replicas."""
    pod = await pods()
    pod.engines = [EngineState(waiting=11)]
    request = ref(pod.url, policy="reactive")
    assert await status_of(app, request) == grpc.StatusCode.UNAVAILABLE  # registers it
    await scrape_all(app)
    assert await desired(app, request) == 3
    return request


async def test_keda_is_answered_by_another_process(front_app, pods):
    await answering_workload(front_app, pods)
    front = front_of(front_app)
    assert front.process is not None and front.process.pid != os.getpid()


async def test_a_killed_front_process_is_replaced_on_the_same_port(front_app, pods):
    request = await answering_workload(front_app, pods)
    front = front_of(front_app)
    assert front.process is not None
    killed = front.process
    assert await readiness(front_app) == (200, "ready")
    killed.send_signal(signal.SIGKILL)
    await wait_until(lambda: front._link is None, 15)
    assert await readiness(front_app) == (503, "the front process answering KEDA is not "
                                                "running (it is being started)")
    await wait_until(lambda: front.process is not killed and front._link is not None, 15)
    assert await readiness(front_app) == (200, "ready")
    assert await desired(front_app, request) == 3  # nothing learnt was lost
    assert front_app.service.telemetry.registry.get_sample_value(
        "scaler_front_restarts_total") == 1


async def readiness(app: RunningApp) -> tuple[int, str]:
    """/readyz: the status code and the reason (or "ready")."""
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{app.http_port}/readyz") as resp:
        body = await resp.json()
        return resp.status, body.get("reasons", [body["status"]])[0]


async def test_a_broken_line_ends_that_front_and_a_new_one_answers(front_app, pods):
    request = await answering_workload(front_app, pods)
    front = front_of(front_app)
    assert front.process is not None and front._link is not None
    first = front.process
    front._link.channel._reader.feed_data(b"{not json\n")  # as if the front wrote garbage
    await wait_until(lambda: first.returncode is not None, 15)
    await wait_until(lambda: front.process is not first and front._link is not None, 15)
    assert await desired(front_app, request) == 3


async def test_stopping_while_a_front_is_being_started_leaves_no_process(
        front_app, monkeypatch):
    front = front_of(front_app)
    spawned: list[FrontChild] = []
    in_handshake = asyncio.Event()
    real_spawn = FrontChild.spawn

    async def recorded_spawn(args: list[str], *, pass_fds: tuple[int, ...]) -> FrontChild:
        child = await real_spawn(args, pass_fds=pass_fds)
        spawned.append(child)
        return child

    async def stuck_handshake(channel: Channel, port: int) -> int:
        in_handshake.set()
        await asyncio.Event().wait()  # never answers: stop() comes first
        raise AssertionError("unreachable")

    monkeypatch.setattr(FrontChild, "spawn", recorded_spawn)
    monkeypatch.setattr(front, "_handshake", stuck_handshake)
    assert front.process is not None
    front.process.send_signal(signal.SIGKILL)
    await asyncio.wait_for(in_handshake.wait(), 15)
    await front_app.stop()
    assert len(spawned) == 1 and spawned[0].returncode is not None  # killed and reaped


def nice_of(pid: int) -> int:
    """The nice value of a process's main thread, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])


async def test_answers_go_before_scraping_for_the_cpu_also_after_a_restart(front_app):
    """The scaling process's event loop lowers its priority; every front keeps the higher one."""
    front = front_of(front_app)
    assert front.process is not None
    scaling = os.getpriority(os.PRIO_PROCESS, 0)  # this thread: the event loop's
    assert scaling - nice_of(front.process.pid) == SCALING_NICE
    first = front.process
    first.send_signal(signal.SIGKILL)
    await wait_until(lambda: front.process is not first and front._link is not None, 15)
    assert front.process is not None
    assert scaling - nice_of(front.process.pid) == SCALING_NICE


async def test_a_verdict_turns_unavailable_in_the_front_once_its_data_is_stale(
        front_app, pods, clock: ManualClock):
    pod = await pods()
    request = ref(pod.url)
    await status_of(front_app, request)
    await scrape_all(front_app)
    assert await status_of(front_app, request) == grpc.StatusCode.OK
    clock.advance(1.0)  # past scrape.stale_after_s = 0.3, and no new decision is pushed
    statuses: list[grpc.StatusCode] = []

    async def poll_until_unavailable() -> None:
        while (code := await status_of(front_app, request)) == grpc.StatusCode.OK:
            statuses.append(code)
        statuses.append(code)

    await asyncio.wait_for(poll_until_unavailable(), 10)
    assert statuses[-1] == grpc.StatusCode.UNAVAILABLE


async def test_stop_ends_the_front_process_cleanly(clock: ManualClock):
    config = make_config({"front_process": True}, timeout_s=1.0)
    app = await start_app(config, ScalerService(config, clock=clock, background=False))
    process = front_of(app).process
    assert process is not None
    await app.stop()
    assert process.returncode == 0
    assert await status_of(app, ref()) == grpc.StatusCode.UNAVAILABLE  # nothing listens


async def test_a_port_in_use_fails_the_start_saying_so(clock: ManualClock):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config({"front_process": True, "grpc_port": port}, timeout_s=1.0)
        service = ScalerService(config, clock=clock, background=False)
        with pytest.raises(OSError) as info:
            await start_app(config, service)
        await service.stop()
    assert str(info.value) == (f"the front process did not start: cannot listen for gRPC on "
                               f"127.0.0.1:{port}: Address already in use")


async def test_the_front_keeps_its_start_up_objects_out_of_the_collector():
    """Once it listens, the front has frozen what it loaded (grpc, protobuf): a full collection
    under load then walks only what calls left, not tens of thousands of start-up objects
    (an 8 ms pause before, under 1 ms after: BENCHMARKS.md, issue 14)."""
    ours, theirs = socket.socketpair()
    channel = await Channel.over(ours)
    front = asyncio.create_task(run_front(theirs))
    try:
        gc.unfreeze()
        channel.send({"t": "hello", "host": "127.0.0.1", "port": 0, "tls": None,
                      "grace_s": 0.0, "idle_s": 60.0, "max_metadata_bytes": 16384,
                      "max_message_bytes": 4 * 2**20, "max_concurrent_streams": 1000,
                      "keepalive_s": 30.0, "keepalive_timeout_s": 10.0})
        assert (await next_message(channel))["t"] == "ready"
        assert gc.get_freeze_count() > 1000
    finally:
        await channel.close()
        assert await asyncio.wait_for(front, 10) == 0
        gc.unfreeze()
