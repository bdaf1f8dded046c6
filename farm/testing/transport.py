"""Conformance suite for :class:`farm.devices.agent_device.AgentTransport`.

A transport starts the hwfarm agent where the models run (a child process, an SSH exec
channel, …) and puts model bytes where that agent can read them. ``make_transport()``
returns a fresh transport to a reachable machine whose ``python`` has hwfarm's agent
dependencies (numpy, onnxruntime). The checks talk to the agent exactly as
:class:`~farm.devices.agent_device.AgentDevice` does, through an
:class:`~farm.devices.agent_client.AgentSession`.

    from farm.testing.transport import check_transport
    check_transport(lambda: MyTransport(spec))
"""

from __future__ import annotations

import hashlib
import queue
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from farm.agent.measure import Policy
from farm.devices.agent_client import AgentSession
from farm.devices.agent_device import AgentTransport
from farm.testing._models import gemm_model, save_onnx
from farm.workload import Workload

__all__ = ["TRANSPORT_CHECKS", "check_transport", "check_agent_answers_hello",
           "check_staged_models_run_in_the_agent", "check_kill_ends_the_agent", "check_close_ends_the_agent",
           "check_close_then_reuse"]

MakeTransport = Callable[[], AgentTransport]

START_S = 60.0  # the agent's start-up: imports numpy and probes the runtimes
REPLY_S = 60.0
_QUICK = Policy(warmup=0, warmup_s=0, min_runs=3, max_runs=3, min_time_s=0, max_time_s=5.0, gate=0)


def _session(t: AgentTransport) -> AgentSession:
    return AgentSession(t.open_agent, name=f"{t.kind} transport")


def _run(session: AgentSession, model_path: str) -> dict[str, Any]:
    return session.request({"op": "run", "model": model_path, "runtime": "onnxruntime", "threads": 1,
                            "policy": asdict(_QUICK)}, timeout_s=REPLY_S)


def check_agent_answers_hello(make_transport: MakeTransport) -> None:
    t = make_transport()
    session = _session(t)
    try:
        assert isinstance(t.kind, str) and t.kind, f"{type(t).__name__}.kind is {t.kind!r}, not a name"
        hello = session.start(timeout_s=START_S)
        assert hello.get("ok") is True and hello.get("agent") == "hwfarm-agent", \
            f"{t.kind}: the agent's hello is {hello!r}"
        assert hello.get("runtimes", {}).get("onnxruntime"), \
            f"{t.kind}: onnxruntime is not installed where the agent runs: {hello.get('runtimes')}"
    finally:
        session.close()
        t.close()


def check_staged_models_run_in_the_agent(make_transport: MakeTransport) -> None:
    """stage() puts exactly the workload's bytes where the agent reads them: the same bytes
    at the same place, other bytes elsewhere, and bytes that are no model are refused."""
    t = make_transport()
    session = _session(t)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            a = save_onnx(gemm_model(8), Path(tmp) / "a.onnx")
            b = save_onnx(gemm_model(16), Path(tmp) / "b.onnx")
        path_a = t.stage(a)
        assert isinstance(path_a, str) and path_a, f"{t.kind}: stage() returned {path_a!r}, not a path"
        assert t.stage(a) == path_a, f"{t.kind}: staging the same workload twice gave two paths"
        path_b = t.stage(b)
        assert path_b != path_a, f"{t.kind}: two different workloads were staged at the same path {path_a}"
        for w, path in ((a, path_a), (b, path_b)):
            reply = _run(session, path)
            assert reply.get("ok") is True, f"{t.kind}: the agent could not run staged {w.name} at {path}: {reply}"
            assert 1 <= len(reply["samples_ms"]) <= _QUICK.max_runs, f"{t.kind}: samples {reply['samples_ms']}"
        junk = b"\x08\x07" + b"not a model" * 10
        bad = Workload(hashlib.sha256(junk).hexdigest(), "onnx", "junk", None, a.graph, junk)
        reply = _run(session, t.stage(bad))
        assert reply.get("ok") is False and reply.get("kind") == "model", \
            f"{t.kind}: staged junk bytes were not refused as a model: {reply}"
    finally:
        session.close()
        t.close()


def _raw_agent(t: AgentTransport) -> tuple[Any, queue.Queue[str | None]]:
    """The agent's pipe without a session, after one hello exchange."""
    lines: queue.Queue[str | None] = queue.Queue()
    pipe = t.open_agent(lines.put, lambda _text: None)
    pipe.write('{"op": "hello"}\n')
    first = lines.get(timeout=START_S)
    assert first is not None and '"hwfarm-agent"' in first, f"{t.kind}: the agent's first line is {first!r}"
    return pipe, lines


def _wait_for_eof(lines: queue.Queue[str | None], what: str) -> None:
    try:
        while lines.get(timeout=REPLY_S) is not None:
            pass
    except queue.Empty:
        raise AssertionError(f"{what}: the agent's output did not end within {REPLY_S:g} s") from None


def check_kill_ends_the_agent(make_transport: MakeTransport) -> None:
    t = make_transport()
    try:
        pipe, lines = _raw_agent(t)
        assert pipe.alive(), f"{t.kind}: the agent is not alive after answering"
        pipe.kill()
        assert not pipe.alive(), f"{t.kind}: the agent is alive after kill()"
        _wait_for_eof(lines, f"{t.kind}: after kill()")
    finally:
        t.close()


def check_close_ends_the_agent(make_transport: MakeTransport) -> None:
    t = make_transport()
    try:
        pipe, lines = _raw_agent(t)
        pipe.close()
        assert not pipe.alive(), f"{t.kind}: the agent is alive after close()"
        _wait_for_eof(lines, f"{t.kind}: after close()")
    finally:
        t.close()


def check_close_then_reuse(make_transport: MakeTransport) -> None:
    t = make_transport()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            w = save_onnx(gemm_model(8), Path(tmp) / "w.onnx")
        t.stage(w)
        t.close()
        t.close()  # closing twice is harmless
        second = _session(t)
        try:
            reply = _run(second, t.stage(w))
        finally:
            second.close()
        assert reply.get("ok") is True, f"{t.kind}: after close(), a staged model no longer runs: {reply}"
    finally:
        t.close()


TRANSPORT_CHECKS: tuple[Callable[[MakeTransport], None], ...] = (
    check_agent_answers_hello,
    check_staged_models_run_in_the_agent,
    check_kill_ends_the_agent,
    check_close_ends_the_agent,
    check_close_then_reuse,
)


def check_transport(make_transport: MakeTransport) -> None:
    """Run every check of :data:`TRANSPORT_CHECKS`; the first failure raises AssertionError."""
    for check in TRANSPORT_CHECKS:
        check(make_transport)
