"""Is this device quiet enough to measure? A verdict and advice from a noise scan.

:func:`diagnose` reads a scan (:func:`farm.agent.noise.noise_scan`, run on the device) and
the device's facts (the agent's ``hello``) and says what it saw and what to do, the way
careful benchmark harnesses do (pyperf's ``system show``/``system tune``, Google Benchmark's
CPU scaling warning). Pure: no I/O, so every rule has a unit test.

The verdict comes from what the scan measured:

- **very noisy**: the reference's window medians vary by more than ``CV_VERY_NOISY`` (15%), or
  more than ``SLOW_VERY_NOISY`` (30%) of the windows ran slow (above 1.25x the scan's floor),
  or the hypervisor stole more than ``STEAL_VERY_NOISY`` (10%) of the CPU time;
- **noisy**: window CV above ``CV_NOISY`` (5%), slow windows above ``SLOW_NOISY`` (10%), more
  than ``SPELLS_NOISY`` (10%) of single reference readings slow (short spells), steal above
  ``STEAL_NOISY`` (2%), or another process using more than ``BUSY_CORE`` (10% of a core);
- **quiet** otherwise.

Settings that make figures drift without showing in a few seconds (a governor other than
``performance``, turbo/boost on, no pinned or isolated CPU, heat above ``HOT_C``) add advice
but do not change the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["Diagnosis", "diagnose", "VERDICTS"]

VERDICTS = ("quiet", "noisy", "very noisy")

CV_NOISY = 0.05
CV_VERY_NOISY = 0.15
SLOW_NOISY = 0.10
SLOW_VERY_NOISY = 0.30
SPELLS_NOISY = 0.10
STEAL_NOISY = 0.02
STEAL_VERY_NOISY = 0.10
BUSY_CORE = 0.10  # another process using more than this share of a core
IOWAIT = 0.05
HOT_C = 80.0


@dataclass(frozen=True)
class Diagnosis:
    verdict: str  # one of VERDICTS
    findings: tuple[str, ...]
    advice: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "findings": list(self.findings), "advice": list(self.advice)}


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.01 else f"{100 * x:.1f}%"


def _num(scan: dict[str, Any], key: str) -> float | None:
    value = scan.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _named(procs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p.get('name')} (pid {p.get('pid')}, {_pct(float(p['cpu_share']))} of a core"
                     + (f": {p['cmd']}" if p.get("cmd") and not p.get("kernel") else "") + ")" for p in procs)


def diagnose(scan: dict[str, Any], facts: dict[str, Any], *,
             affinity: Sequence[int] | None = None) -> Diagnosis:
    """The verdict, findings and advice for one device's noise scan. ``affinity`` is the
    device entry's CPU list (None: not pinned)."""
    findings: list[str] = []
    advice: list[str] = []
    level = 0  # index into VERDICTS

    def worse(to: int) -> None:
        nonlocal level
        level = max(level, to)

    # -- what the reference workload saw
    cv = _num(scan, "window_cv") or 0.0
    slow = _num(scan, "slow_share") or 0.0
    spells = _num(scan, "ref_slow_read_share") or 0.0
    median, floor = _num(scan, "ref_median_us"), _num(scan, "floor_us")
    if median is not None:
        findings.append(f"reference {median:.1f} µs median (floor {floor or median:.1f} µs, p90 "
                        f"{_num(scan, 'ref_p90_us') or median:.1f} µs), window CV {_pct(cv)}, "
                        f"{scan.get('states_seen', 1)} state(s) seen over {scan.get('seconds', '?')} s")
    if cv > CV_NOISY:
        worse(2 if cv > CV_VERY_NOISY else 1)
        findings.append(f"the window medians vary by {_pct(cv)} (CV): the machine's speed drifted during the scan")
    if slow > SLOW_NOISY:
        worse(2 if slow > SLOW_VERY_NOISY else 1)
        findings.append(f"{_pct(slow)} of the {scan.get('windows', '?')} windows ran in a slow state "
                        f"(median above 1.25x the floor)")
    if cv > CV_NOISY or slow > SLOW_NOISY:
        advice.append("the machine changes speed for longer than a run lasts: profile with more rounds "
                      "(e.g. --max-rounds 24; default 12) so that enough of them run in the quiet state, and "
                      "expect records marked unstable when too few do")
    if spells > SPELLS_NOISY:
        worse(1)
        probe = _num(scan, "probe_slow_share")
        findings.append(f"{_pct(spells)} of single reference readings were slow (spells shorter than a window)"
                        + (f"; the speed probe read slow {_pct(probe)} of the time" if probe is not None else ""))
        advice.append("keep the contention gate on (profile --gate, default 1.25): it leaves out runs "
                      "that a short slow spell touched")

    # -- why: the hypervisor, other processes, the disks
    steal = _num(scan, "steal_share")
    if steal is not None and steal > STEAL_NOISY:
        worse(2 if steal > STEAL_VERY_NOISY else 1)
        findings.append(f"steal time {_pct(steal)}: the hypervisor ran other guests on this VM's CPUs")
        advice.append("the hypervisor is taking this VM's CPU: measure on a dedicated/bare-metal host or "
                      "a larger instance (one whose vCPUs are not shared)")
    busy = [p for p in scan.get("top_processes") or ()
            if isinstance(p, dict) and float(p.get("cpu_share") or 0.0) > BUSY_CORE]
    users = [p for p in busy if not p.get("kernel")]
    kernel = [p for p in busy if p.get("kernel")]
    if users:
        worse(1)
        named = _named(users)
        findings.append(f"other processes used the CPU during the scan: {named}")
        advice.append(f"stop {named} while measuring (or move them off the measured CPU with taskset)")
    if kernel:
        worse(1)
        findings.append(f"kernel threads used the CPU during the scan: {_named(kernel)} (interrupts, I/O or "
                        "memory work)")
        advice.append("kernel work is busy: pin the device entry to a CPU other than 0 (which takes most "
                      "interrupts) and stop the I/O that drives it")
    runnable = _num(scan, "other_runnable")
    if runnable is not None and runnable >= 1.0:
        findings.append(f"on average {runnable:.1f} other task(s) were runnable next to the scan")
    iowait = _num(scan, "iowait_share")
    if iowait is not None and iowait > IOWAIT:
        findings.append(f"I/O wait {_pct(iowait)}: CPUs sat waiting on the disks")
        advice.append("stop disk-heavy jobs (backups, builds, indexing) while measuring")

    # -- settings that make figures drift
    governors = scan.get("governors") or ([facts["governor"]] if facts.get("governor") else [])
    if governors and any(g != "performance" for g in governors):
        findings.append(f"CPU frequency governor: {', '.join(governors)}")
        advice.append("set the governor to performance: sudo cpupower frequency-set -g performance "
                      "(or: echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)")
    elif not governors:
        findings.append("CPU frequency governor not visible (a VM or container: the host sets the clock)")
    if scan.get("turbo") is True:
        control = str(scan.get("turbo_control") or "")
        off = "1" if control.endswith("no_turbo") else "0"
        findings.append("turbo/boost is on: the clock depends on temperature and on the other cores' load")
        advice.append("disable turbo/boost for stable figures: "
                      + (f"echo {off} | sudo tee {control}" if control else "in the firmware or the cpufreq driver"))
    cpus_usable = scan.get("cpus_usable") or []
    n_cpus = len(cpus_usable) or int(facts.get("cpus_usable") or facts.get("cpu_count") or scan.get("cpu_count") or 1)
    isolated = scan.get("isolated_cpus")
    pinned = list(affinity) if affinity else []
    if isolated:
        if pinned and set(pinned) <= set(isolated):
            findings.append(f"pinned to isolated CPU(s) {pinned}")
        else:
            advice.append(f"pin the device entry to an isolated CPU: affinity: [{isolated[-1]}] in devices.yaml "
                          f"(isolated: {isolated})")
    elif n_cpus > 1:
        cpu = pinned[-1] if pinned else (cpus_usable[-1] if cpus_usable else n_cpus - 1)
        isolate = (f"boot with isolcpus={cpu} (or move other work off it: taskset -pc CPUS PID)"
                   if isolated is not None else "move other work off it (taskset -pc CPUS PID)")
        if pinned:
            advice.append(f"for the quietest figures keep other work off CPU {cpu}: {isolate}")
        else:
            advice.append(f"pin the device entry to one CPU (affinity: [{cpu}] in devices.yaml) so it does not "
                          f"move between cores; for the quietest figures {isolate}")
    temp = facts.get("temperature_c")
    if isinstance(temp, (int, float)) and temp >= HOT_C:
        findings.append(f"hot: {temp:.0f} °C (clocks throttle near here)")
        advice.append("let the device cool and give it a heatsink or fan: a throttling board measures slower "
                      "as it warms")

    verdict = VERDICTS[level]
    if verdict == "quiet":
        advice.insert(0, "quiet right now: figures measured now should repeat (run this check again before a "
                         "long session)")
    return Diagnosis(verdict, tuple(findings), tuple(advice))
