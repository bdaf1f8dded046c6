"""Devices measured by the hwfarm agent (``farm/agent``), reached through a transport.

:class:`AgentDevice` is the Device for every kind whose board can run Python: it starts the
agent through its transport (a child process for ``local://cpu``, an SSH exec channel for
``ssh://`` boards), stages each model where the agent can read it, and turns the agent's raw
samples into a Measurement. The transports differ only in how bytes and processes move.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from farm import __version__
from farm.agent.measure import rejected, summarize
from farm.devices.agent_client import AgentSession, LineSink, Pipe, SubprocessPipe
from farm.devices.base import Health
from farm.devices.caps import DeviceCaps, device_caps
from farm.errors import DeviceError, DeviceUnauthorized, DeviceUnavailable, InputError, ModelError, RuntimeFailure
from farm.measurement import Measurement, Settings
from farm.registry.spec import DeviceSpec
from farm.workload import Workload

__all__ = ["AgentDevice", "AgentTransport", "LocalTransport", "measurement_from_reply"]


class AgentTransport(Protocol):
    """How the agent is reached: start it, put a model where it can read it, clean up."""

    kind: str

    def open_agent(self, on_line: LineSink, on_err: Callable[[str], None]) -> Pipe: ...

    def stage(self, workload: Workload) -> str:
        """Make the workload's bytes available to the agent; returns the path it reads."""
        ...

    def close(self) -> None: ...


AGENT_METERS = ("ina2xx", "rapl", "tegrastats", "command")


class AgentDevice:
    """Energy (optional): ``energy: {meter: ina2xx | rapl | tegrastats | command, ...}`` is read
    by the agent on the device during the timed runs (:mod:`farm.agent.meters`)."""

    def __init__(self, spec: DeviceSpec, transport: AgentTransport) -> None:
        energy = spec.energy
        if energy is not None:
            field = f"device {spec.name!r} field 'energy'"
            if energy.meter not in AGENT_METERS:
                raise InputError(f"{field}: {transport.kind} devices read meter: {' | '.join(AGENT_METERS)} "
                                 f"(got meter: {energy.meter})")
            if energy.meter in ("ina2xx", "rapl") and not energy.path:
                raise InputError(f"{field}: meter {energy.meter} needs path: (e.g. "
                                 + ("/sys/class/hwmon/hwmon2)" if energy.meter == "ina2xx"
                                    else "/sys/class/powercap/intel-rapl:0)"))
            if energy.meter == "command" and not energy.command:
                raise InputError(f"{field}: meter command needs command: (a program that prints joules)")
        self.spec = spec
        self.transport = transport
        self._agent = AgentSession(transport.open_agent, name=spec.name)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def caps(self) -> DeviceCaps:
        return device_caps(self.spec)

    def _hello(self) -> dict[str, Any]:
        return self._agent.start(timeout_s=min(self.spec.timeout_s, 120.0))

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.transport.kind, "url": self.spec.url,
                "runtime": self.spec.runtime or "onnxruntime", "threads": self.spec.threads,
                "affinity": list(self.spec.affinity) if self.spec.affinity else None,
                "simulated": False}

    def check(self) -> Health:
        try:
            hello = self._hello()
        except DeviceUnauthorized as err:
            return Health(self.name, "unreachable", str(err), state="unauthorized")
        except DeviceError as err:
            return Health(self.name, "unreachable", str(err), state="offline")
        runtimes = hello.get("runtimes", {})
        facts = dict(hello.get("facts", {})) | {"runtimes": runtimes}
        wanted = self.spec.runtime or "onnxruntime"
        if wanted not in runtimes:
            return Health(self.name, "unavailable", f"runtime {wanted!r} does not run on {self.transport.kind} devices "
                          f"(agent runtimes: {', '.join(sorted(runtimes))})", facts)
        if not runtimes[wanted]:
            return Health(self.name, "unavailable", f"runtime {wanted!r} is not installed on the device", facts)
        cpus = int(facts.get("cpu_count") or 0)
        if self.spec.affinity and cpus and max(self.spec.affinity) >= cpus:
            return Health(self.name, "error", f"affinity {list(self.spec.affinity)} names CPUs the device lacks "
                          f"({cpus} CPUs)", facts)
        usable = facts.get("cpus_usable") or cpus
        detail = f"{facts.get('cpu_model')}, {usable} CPUs usable, {wanted} {runtimes[wanted]}"
        if self.spec.delegate and wanted != "litert":
            return Health(self.name, "error", f"delegate {self.spec.delegate!r} needs runtime: litert "
                          f"(this entry runs {wanted})", facts)
        if self.spec.delegate:
            try:
                reply = self._agent.request({"op": "check_delegate", "delegate": self.spec.delegate,
                                             "delegate_options": self.spec.delegate_options},
                                            timeout_s=min(self.spec.timeout_s, 60.0))
            except DeviceError as err:
                return Health(self.name, "unreachable", str(err), facts)
            if not reply.get("ok"):
                return Health(self.name, "unavailable", str(reply.get("error")), facts)
            detail += f"; {reply.get('detail')}"
        if self.spec.energy is not None:
            try:
                reply = self._agent.request({"op": "check_meter", "energy": self._energy_request()},
                                            timeout_s=min(self.spec.timeout_s, 60.0))
            except DeviceError as err:
                return Health(self.name, "unreachable", str(err), facts)
            if not reply.get("ok"):
                facts["energy"] = {"meter": self.spec.energy.meter, "ok": False}
                return Health(self.name, "unavailable", f"energy meter unavailable: {reply.get('error')}", facts)
            facts["energy"] = {"meter": self.spec.energy.meter, "ok": True, "detail": reply.get("detail")}
            detail += f"; energy: {reply.get('detail')}"
        return Health(self.name, "ok", detail, facts)

    def noise(self, seconds: float = 3.0) -> dict[str, Any]:
        """How noisy the device is now: the agent's noise scan (:mod:`farm.agent.noise`, keeping
        one core busy for ``seconds``) and its facts, for :func:`farm.doctor.diagnose`."""
        hello = self._hello()
        reply = self._agent.request({"op": "noise", "seconds": seconds}, timeout_s=seconds + 30)
        if not reply.get("ok"):
            raise DeviceUnavailable(f"device {self.name!r}: noise check failed: "
                                    f"{reply.get('error', 'unknown agent error')}")
        return {"noise": reply["noise"], "facts": hello.get("facts", {})}

    def _energy_request(self) -> dict[str, Any] | None:
        if self.spec.energy is None:
            return None
        return self.spec.energy.model_dump(exclude_none=True)

    def run(self, workload: Workload, settings: Settings) -> Measurement:
        self._hello()
        model_path = self.transport.stage(workload)
        reply = self._agent.request(
            {"op": "run", "model": model_path, "runtime": settings.runtime, "threads": settings.threads,
             "affinity": list(settings.affinity) if settings.affinity else None,
             "policy": settings.to_dict()["policy"], "energy": self._energy_request(),
             # the quiet estimator judges each round by the reference workload's readings
             **({"reference": True} if settings.estimator == "quiet" else {}),
             **({"delegate": self.spec.delegate, "delegate_options": self.spec.delegate_options}
                if self.spec.delegate and settings.runtime == "litert" else {})},
            timeout_s=self.spec.timeout_s,
        )
        if not reply.get("ok"):
            kind, error = reply.get("kind"), reply.get("error", "unknown agent error")
            if kind == "meter":
                raise DeviceUnavailable(f"device {self.name!r}: {error}")
            if kind == "model":
                raise ModelError(f"{workload.path or workload.name}: {error}")
            if kind == "unavailable":
                raise DeviceUnavailable(f"device {self.name!r}: {error}")
            raise RuntimeFailure(f"device {self.name!r}: {error}")
        return measurement_from_reply(self.spec, workload, settings, reply)

    def close(self) -> None:
        self._agent.close()
        self.transport.close()


class LocalTransport:
    """The host itself: the agent is ``python -m farm.agent`` in a child process; models are
    written to a private temp dir (what runs is exactly the hashed bytes)."""

    kind = "local"

    def __init__(self) -> None:
        self._tmp: str | None = None

    def open_agent(self, on_line: LineSink, on_err: Callable[[str], None]) -> Pipe:
        return SubprocessPipe([sys.executable, "-m", "farm.agent"], on_line, on_err, env=_agent_env())

    def stage(self, workload: Workload) -> str:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="hwfarm-local-")
        path = Path(self._tmp) / f"{workload.hash[:16]}.{workload.format}"
        if not path.exists():
            path.write_bytes(workload.data)
        return str(path)

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _agent_env() -> dict[str, str]:
    env = dict(os.environ)
    # Make `-m farm.agent` importable from a source checkout as well as an install.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # One runtime thread means one: keep BLAS/OpenMP pools from adding their own.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def measurement_from_reply(spec: DeviceSpec, workload: Workload, settings: Settings,
                           reply: dict[str, Any]) -> Measurement:
    """Agent reply → Measurement: the coordinator computes statistics from the raw samples."""
    samples = [float(x) for x in reply["samples_ms"]]
    if not samples:
        raise RuntimeFailure(f"device {spec.name!r}: agent returned no samples")
    contended = [int(i) for i in reply.get("contended", ()) if 0 <= int(i) < len(samples)]
    provenance = dict(reply.get("provenance", {})) | {
        "device": spec.name, "device_url": spec.url, "hwfarm_version": __version__,
        "simulated": False, "stop_reason": reply.get("stop_reason"), "elapsed_s": reply.get("elapsed_s"),
    }
    energy_mj: float | None = None
    energy = reply.get("energy")
    if spec.energy is not None:
        if not isinstance(energy, dict) or not isinstance(energy.get("energy_mj"), (int, float)):
            raise RuntimeFailure(f"device {spec.name!r}: energy meter {spec.energy.meter} is configured but the "
                                 "agent returned no energy")
        energy_mj = float(energy["energy_mj"])
        provenance["energy"] = dict(energy.get("provenance") or {})
    return Measurement(
        device=spec.name,
        workload=workload.hash,
        settings=settings,
        stats=summarize(samples, settings.policy.confidence, contended),
        samples_ms=tuple(samples),
        outliers=tuple(rejected(samples, contended)),
        warmup_ms=tuple(float(x) for x in reply.get("warmup_ms", ())),
        stop_reason=str(reply.get("stop_reason")),
        provenance=provenance,
        energy_mj=energy_mj,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
