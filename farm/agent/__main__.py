"""``python -m farm.agent``: serve measurement requests as JSON lines on stdin/stdout.

One request per line, one reply per line, in order::

    {"op": "hello"}
    -> {"ok": true, "agent": "hwfarm-agent", "protocol": 1, "facts": {...}, "runtimes": {...}}
    {"op": "run", "model": "/path/m.onnx", "runtime": "onnxruntime", "threads": 1,
     "affinity": [0], "policy": {"warmup": 10, "min_runs": 10, ...}}
    -> {"ok": true, "samples_ms": [...], "warmup_ms": [...], "stop_reason": "converged",
        "elapsed_s": 1.2, "provenance": {...}}

A run request may carry ``"reference": true``: the reference workload (:mod:`.reference`) is
read before the warm-up and after the timed runs, and the provenance gains ``"reference":
{"before_us", "after_us", "workload"}``. Every run request loads the model in a fresh runtime
session; the provenance's ``session`` names it (agent process and request number).

A run request may carry ``"energy": {"meter": "ina2xx", "path": ..., "sample_hz": ...}``
(see :mod:`.meters`): the meter runs during the timed runs and the reply gains
``"energy": {"energy_mj": ..., "provenance": {...}}``. ``{"op": "check_meter", "energy": {...}}``
-> ``{"ok": true, "detail": "..."}`` checks a meter without running anything. A LiteRT run
may carry ``"delegate"`` (``cpu``, ``xnnpack``, ``edgetpu`` or an external delegate library such
as ``libedgetpu.so.1``, with ``"delegate_options"``); the provenance's ``delegate`` then says
which nodes the delegate took and which stayed on the CPU. ``{"op": "check_delegate",
"delegate": ...}`` loads the library once, for health checks.

``{"op": "noise", "seconds": 3}`` -> ``{"ok": true, "noise": {...}}`` reads the reference
workload and the speed probe for ``seconds`` (0.5 to 60) and reports how noisy the machine is
and what the OS says about why (:mod:`.noise`).

Failures reply ``{"ok": false, "kind": "model" | "unavailable" | "runtime" | "request" | "meter",
"error": "one line"}`` and the agent keeps serving. EOF on stdin ends it. Runtimes that print
to stdout cannot corrupt the protocol: file descriptor 1 is pointed at stderr and replies go
to a private duplicate of the original stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from .facts import host_facts, temperature_c
from .measure import Policy, run_protocol, speed_probe, summarize
from .meters import Meter, MeterError, open_meter
from .noise import noise_scan
from .reference import REFERENCE_WORKLOAD, reference
from .runners import RUNNERS, ModelLoadError, RunnerUnavailable, get_runner

PROTOCOL = 1
_SESSIONS = [0]  # run requests served by this agent process: each loads a fresh session


def _runtimes() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in RUNNERS:
        try:
            runner = get_runner(name)
            found[name] = runner.version() if runner.available() else None
        except (RunnerUnavailable, ImportError):
            found[name] = None
    return found


def _set_affinity(cpus: list[int] | None) -> list[int] | None:
    """Pin this process; returns the CPUs actually in effect (None where the OS can't tell)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    if cpus:
        os.sched_setaffinity(0, set(cpus))
    return sorted(os.sched_getaffinity(0))


def handle(req: dict[str, Any]) -> dict[str, Any]:
    op = req.get("op")
    if op == "hello":
        return {"ok": True, "agent": "hwfarm-agent", "protocol": PROTOCOL,
                "facts": host_facts(), "runtimes": _runtimes()}
    if op == "check_delegate":
        try:
            return {"ok": True, "detail": get_runner("litert").check_delegate(  # type: ignore[attr-defined]
                str(req["delegate"]), req.get("delegate_options"))}
        except (RunnerUnavailable, KeyError) as err:
            return {"ok": False, "kind": "unavailable", "error": str(err)}
    if op == "check_meter":
        try:
            return {"ok": True, "detail": _meter(req.get("energy")).check()}
        except MeterError as err:
            return {"ok": False, "kind": "meter", "error": str(err)}
    if op == "noise":
        try:
            seconds = float(req.get("seconds", 3.0))
        except (TypeError, ValueError):
            seconds = float("nan")
        if not 0.5 <= seconds <= 60:  # NaN fails too
            return {"ok": False, "kind": "request",
                    "error": f"noise: seconds must be 0.5 to 60 (got {req.get('seconds')!r})"}
        return {"ok": True, "noise": noise_scan(seconds)}
    if op != "run":
        return {"ok": False, "kind": "request", "error": f"unknown op {op!r}"}
    try:
        model = str(req["model"])
        runtime = str(req.get("runtime", "onnxruntime"))
        threads = int(req.get("threads", 1))
        policy = Policy(**req.get("policy", {}))
        delegate = req.get("delegate")
        with_reference = bool(req.get("reference", False))
        if delegate is not None and runtime != "litert":
            raise ValueError(f"a delegate ({delegate}) needs the litert runtime, not {runtime}")
    except (KeyError, TypeError, ValueError) as err:
        return {"ok": False, "kind": "request", "error": f"bad run request: {err}"}
    try:
        affinity = _set_affinity(req.get("affinity"))
    except (OSError, ValueError) as err:
        return {"ok": False, "kind": "request", "error": f"cannot pin to CPUs {req.get('affinity')}: {err}"}
    meter: Meter | None = None
    if req.get("energy") is not None:
        try:
            meter = _meter(req["energy"])
            meter.check()
        except MeterError as err:
            return {"ok": False, "kind": "meter", "error": str(err)}
    try:
        runner = get_runner(runtime)
        version = runner.version()
        if runtime == "litert":  # only the LiteRT runner takes a delegate (checked above)
            run_once = runner.prepare(model, threads=threads, delegate=str(delegate) if delegate else None,  # type: ignore[call-arg]
                                      delegate_options=req.get("delegate_options"))
        else:
            run_once = runner.prepare(model, threads=threads)
    except RunnerUnavailable as err:
        return {"ok": False, "kind": "unavailable", "error": str(err)}
    except ModelLoadError as err:
        return {"ok": False, "kind": "model", "error": str(err)}
    _SESSIONS[0] += 1
    temp_before = temperature_c()
    ref_before = reference().read() if with_reference else None
    energy: dict[str, Any] | None = None
    try:
        sampled = run_protocol(run_once, policy, on_timed_start=meter.start if meter else None,
                               on_timed_end=meter.stop if meter else None,
                               # An energy meter integrates over the timed window: waiting and
                               # probe reads inside it would be charged to the model. No gate then.
                               probe=speed_probe() if policy.gate > 0 and meter is None else None)
        if meter is not None:
            energy = meter.result(len(sampled.samples_ms),
                                  summarize(list(sampled.samples_ms), contended=sampled.contended).median_ms)
    except MeterError as err:
        return {"ok": False, "kind": "meter", "error": f"energy meter {meter.name if meter else ''} failed "
                f"during the run: {err}"}
    except Exception as err:  # a runtime crashing mid-loop is a device failure, reported, not fatal
        return {"ok": False, "kind": "runtime", "error": f"{runtime} failed while running {model}: {err}"}
    finally:
        if meter is not None:
            meter.close()
    ref_after = reference().read() if with_reference else None
    facts = host_facts()
    provenance = {
        "runtime": runtime,
        "runtime_version": version,
        "threads": threads,
        "affinity": affinity,
        "python": facts["python"],
        "os": facts["os"],
        "machine": facts["machine"],
        "cpu_model": facts["cpu_model"],
        "simd": facts["simd"],
        "hostname": facts["hostname"],
        "governor": facts["governor"],
        # LiteRT: which delegate ran, which nodes it took and which stayed on the CPU.
        "delegate": getattr(runner, "delegation", None),
        "temperature_c_before": temp_before,
        "temperature_c_after": facts["temperature_c"],
        # The contention gate: the probe's fast level, how many runs it saw slowed, time waited.
        "contention": sampled.gate,
        # The machine's state before and after this round (farm.agent.reference).
        "reference": {"before_us": round(ref_before, 3), "after_us": round(ref_after or 0.0, 3),
                      "workload": REFERENCE_WORKLOAD} if ref_before is not None else None,
        "session": f"{os.getpid()}-{_SESSIONS[0]}",
        "agent_protocol": PROTOCOL,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    reply = {"ok": True, "samples_ms": list(sampled.samples_ms), "warmup_ms": list(sampled.warmup_ms),
             "stop_reason": sampled.stop_reason, "elapsed_s": sampled.elapsed_s,
             "contended": list(sampled.contended),
             "provenance": provenance}
    if energy is not None:
        reply["energy"] = energy
    return reply


def _meter(spec: Any) -> Meter:
    if not isinstance(spec, dict):
        raise MeterError("energy must be an object with a meter field")
    return open_meter(spec)


def serve(stdin: Any, reply_fd: int) -> None:
    out = os.fdopen(reply_fd, "w", buffering=1, encoding="utf-8")
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            reply = handle(req) if isinstance(req, dict) else {"ok": False, "kind": "request", "error": "request must be a JSON object"}
        except json.JSONDecodeError as err:
            reply = {"ok": False, "kind": "request", "error": f"invalid JSON: {err}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main() -> None:
    reply_fd = os.dup(1)
    os.dup2(2, 1)  # anything a runtime prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    serve(sys.stdin, reply_fd)


if __name__ == "__main__":
    main()
