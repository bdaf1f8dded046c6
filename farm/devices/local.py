"""The host CPU (``local://cpu``): a real device, measured by the agent in a child process.

The child isolates the measurement from the coordinator (its threads, its imports, a
runtime that crashes or hangs) and is pinned with ``os.sched_setaffinity`` where the entry
sets ``affinity``. It is the same agent that remote kinds push to their boards.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..agent.measure import mad_outliers, summarize
from ..errors import DeviceError, DeviceUnavailable, ModelError, RuntimeFailure
from ..measurement import Measurement, Settings
from ..registry import DeviceSpec
from ..workload import Workload
from .agent_client import AgentProcess
from .base import Health

__all__ = ["LocalDevice", "measurement_from_reply"]


class LocalDevice:
    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self._agent = AgentProcess([sys.executable, "-m", "farm.agent"], name=spec.name,
                                   env=_agent_env())
        self._tmp: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def _hello(self) -> dict[str, Any]:
        return self._agent.start(timeout_s=min(self.spec.timeout_s, 120.0))

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "local", "url": self.spec.url,
                "runtime": self.spec.runtime or "onnxruntime", "threads": self.spec.threads,
                "affinity": list(self.spec.affinity) if self.spec.affinity else None,
                "simulated": False}

    def check(self) -> Health:
        try:
            hello = self._hello()
        except DeviceError as err:
            return Health(self.name, "error", str(err))
        runtimes = hello.get("runtimes", {})
        facts = dict(hello.get("facts", {})) | {"runtimes": runtimes}
        wanted = self.spec.runtime or "onnxruntime"
        if wanted not in runtimes:
            return Health(self.name, "unavailable", f"runtime {wanted!r} does not run on local devices "
                          f"(local runtimes: {', '.join(sorted(runtimes))})", facts)
        if not runtimes[wanted]:
            return Health(self.name, "unavailable", f"runtime {wanted!r} is not installed on this host", facts)
        usable = facts.get("cpus_usable") or facts.get("cpu_count") or 0
        if self.spec.affinity and max(self.spec.affinity) >= int(os.cpu_count() or 0):
            return Health(self.name, "error", f"affinity {list(self.spec.affinity)} names CPUs this host lacks "
                          f"({os.cpu_count()} CPUs)", facts)
        detail = f"{facts.get('cpu_model')}, {usable} CPUs usable, {wanted} {runtimes[wanted]}"
        return Health(self.name, "ok", detail, facts)

    def run(self, workload: Workload, settings: Settings) -> Measurement:
        self._hello()
        model_path = self._stage(workload)
        reply = self._agent.request(
            {"op": "run", "model": model_path, "runtime": settings.runtime, "threads": settings.threads,
             "affinity": list(settings.affinity) if settings.affinity else None,
             "policy": settings.to_dict()["policy"]},
            timeout_s=self.spec.timeout_s,
        )
        if not reply.get("ok"):
            kind, error = reply.get("kind"), reply.get("error", "unknown agent error")
            if kind == "model":
                raise ModelError(f"{workload.path or workload.name}: {error}")
            if kind == "unavailable":
                raise DeviceUnavailable(f"device {self.name!r}: {error}")
            raise RuntimeFailure(f"device {self.name!r}: {error}")
        return measurement_from_reply(self.spec, workload, settings, reply)

    def _stage(self, workload: Workload) -> str:
        """Write the hashed bytes for the agent: what runs is exactly what was hashed."""
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="hwfarm-local-")
        path = Path(self._tmp) / f"{workload.hash[:16]}.{workload.format}"
        if not path.exists():
            path.write_bytes(workload.data)
        return str(path)

    def close(self) -> None:
        self._agent.close()
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
    provenance = dict(reply.get("provenance", {})) | {
        "device": spec.name, "device_url": spec.url, "hwfarm_version": __version__,
        "simulated": False, "stop_reason": reply.get("stop_reason"), "elapsed_s": reply.get("elapsed_s"),
    }
    return Measurement(
        device=spec.name,
        workload=workload.hash,
        settings=settings,
        stats=summarize(samples, settings.policy.confidence),
        samples_ms=tuple(samples),
        outliers=tuple(mad_outliers(samples)),
        warmup_ms=tuple(float(x) for x in reply.get("warmup_ms", ())),
        stop_reason=str(reply.get("stop_reason")),
        provenance=provenance,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
