"""Parser for the output of LiteRT / TensorFlow Lite ``benchmark_model`` (pure: text → numbers).

It reads the formats of several generations of the tool, as captured from real runs (the
golden files in ``tests/farm/golden/benchmark_model/`` say where each came from):

- the summary line: ``Inference timings in us: Init: …, First inference: …, Warmup (avg): …,
  Inference (avg): …`` (TF ≥ 1.15/2.x) and the older ``Average inference timings in us:
  Warmup: …, Init: …, no stats: …`` (TF 1.14);
- the stats lines ``count=… first=… curr=… min=… max=… avg=… std=…`` of the warm-up and the
  regular runs, with the newer ``p5=… median=… p95=…`` fields when present;
- memory: ``Memory footprint delta from the start of the tool (MB): init=… overall=…``,
  ``Peak memory footprint (MB): init=… overall=…`` and ``Overall peak memory footprint (MB)
  via periodic monitoring: …``;
- the op-profiling tables (``--enable_op_profiling``): the "Run Order" table of the regular
  runs (``Operator-wise Profiling Info for Regular Benchmark Runs``; older tools print it
  without that header) and "Summary by node type";
- delegate lines: ``Replacing N out of M node(s) with delegate (NAME) node, yielding K
  partitions``, "Explicitly applied … delegate, and the model graph will be completely
  executed", "… will not be executed by the delegate", the GPU delegate's list of
  unsupported operations, ``Created TensorFlow Lite delegate for …``;
- error lines (``ERROR: …``, ``Failed to …``, ``Benchmarking failed.``).

Lines may carry the tool's log prefixes (``INFO: ``, ``VERBOSE: ``) or an Android logcat
prefix (``05-31 10:31:13.022 21767 21767 I tflite  : ``); both are stripped. All times the
tool prints are microseconds; fields say their unit (``_us``, ``_ms``, ``_mb``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RunStats",
    "OpRow",
    "OpTypeSummary",
    "DelegateReport",
    "BenchmarkOutput",
    "parse_benchmark_output",
    "latency_from_output",
    "classify_failure",
]

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LOGCAT = re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*?\s*:\s?")
_LEVEL = re.compile(r"^(INFO|VERBOSE|WARNING|WARN|ERROR|DEBUG|E|W|I)\s*:\s")
_KV = re.compile(r"(\w+)=(" + _NUM + r")")
_SUMMARY = re.compile(
    r"Inference timings in us: Init: (?P<init>" + _NUM + r"), First inference: (?P<first>" + _NUM
    + r"), Warmup \(avg\): (?P<warm>" + _NUM + r"|nan|-?inf), Inference \(avg\): (?P<inf>" + _NUM + r")")
_SUMMARY_OLD = re.compile(
    r"Average inference timings in us: Warmup: (?P<warm>" + _NUM + r"), Init: (?P<init>" + _NUM
    + r"), (?:no stats|Inference): (?P<inf>" + _NUM + r")")
_MEM = re.compile(r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                  r"init=(?P<init>" + _NUM + r") overall=(?P<overall>" + _NUM + r")")
_MEM_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>" + _NUM + r")")
_MODEL_SIZE = re.compile(r"The input model file size \(MB\): (?P<mb>" + _NUM + r")")
_INIT_SESSION = re.compile(r"Initialized session in (?P<ms>" + _NUM + r") ?ms")
_REPLACING = re.compile(r"Replacing (?P<n>\d+) (?:out of (?P<m>\d+) )?node\(s\) with delegate \((?P<name>[^)]+)\) node"
                        r"(?:, yielding (?P<parts>\d+) partitions?)?")
_CREATED = re.compile(r"Created TensorFlow Lite (?:(?P<a>\S+) )?delegate for (?P<b>[\w ]+?)\.?$")
_FULL = re.compile(r"Explicitly applied (?P<name>\S+) delegate, and the model graph will be completely executed")
_NONE = re.compile(r"Though (?P<name>\S+) delegate is explicitly applied, the model graph will not be executed")
_PARTIAL = re.compile(r"Explicitly applied (?P<name>\S+) delegate, and the model graph will be partially executed")
_GPU_SPLIT = re.compile(r"(?:First )?(?P<gpu>\d+) operations will run on the GPU, and the remaining (?P<cpu>\d+)")
_UNSUPPORTED_HEAD = re.compile(r"(?:Following|Next) operations are not supported by (?P<name>\S+) delegate:?")
_PARAM = re.compile(r"^(?P<key>[A-Za-z#][^:\[\]]*?)\s*:\s*\[(?P<val>[^\]]*)\]\s*$")
_RUNNING = re.compile(r"Running benchmark for at least (?P<n>\d+) iterations")
_ERROR_HINTS = ("Failed to", "Benchmarking failed", "failed to prepare", "not a valid Flatbuffer",
                "Could not open", "Aborted", "Segmentation fault", "CANNOT LINK EXECUTABLE", "not found")
# Node types that are delegate kernels, not builtin ops (the op-profiling table names them so).
_DELEGATE_NODE = re.compile(r"(Delegate|DELEGATE)(V\d+)?$|^TfLite\w+Delegate|^Delegate/|^(QNN|Qnn)\w*|^EdgeTpu", )


@dataclass(frozen=True)
class RunStats:
    """One ``count=…`` stats line (microseconds). Percentiles only where the tool prints them."""

    count: int
    avg_us: float
    std_us: float | None = None
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None


@dataclass(frozen=True)
class OpRow:
    """One row of the op-profiling "Run Order" table of the regular runs."""

    node_type: str
    name: str
    start_ms: float
    first_ms: float
    avg_ms: float
    percent: float
    mem_kb: float
    times_called: int

    @property
    def is_delegate(self) -> bool:
        return bool(_DELEGATE_NODE.search(self.node_type))


@dataclass(frozen=True)
class OpTypeSummary:
    node_type: str
    count: int
    avg_ms: float
    percent: float
    times_called: int


@dataclass(frozen=True)
class DelegateReport:
    """What the tool said about delegation. ``replaced_nodes``/``total_nodes`` from the
    "Replacing N out of M node(s)" line; ``unsupported_ops`` from the GPU delegate's list."""

    created: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()
    replaced_nodes: int | None = None
    total_nodes: int | None = None
    partitions: int | None = None
    coverage: str | None = None  # full | partial | none
    unsupported_ops: tuple[str, ...] = ()
    cpu_ops_after_split: int | None = None


@dataclass(frozen=True)
class BenchmarkOutput:
    """Everything :func:`parse_benchmark_output` found. ``ok`` is True when the regular runs
    finished (a summary line or a regular-run stats line is there)."""

    ok: bool
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    warmup: RunStats | None = None
    runs: RunStats | None = None
    requested_runs: int | None = None
    init_session_ms: float | None = None
    model_size_mb: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_peak_mb: float | None = None
    ops: tuple[OpRow, ...] = ()
    op_types: tuple[OpTypeSummary, ...] = ()
    delegate: DelegateReport = field(default_factory=DelegateReport)
    params: dict[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    generation: str = "unknown"  # which output format: "summary-v2", "summary-v1", "stats-only"


def _f(x: str) -> float:
    return float(x)


def _clean(line: str) -> tuple[str, str | None]:
    """Strip logcat and tflite log prefixes; returns (text, level)."""
    line = line.rstrip("\r\n")
    level = None
    m = _LOGCAT.match(line)
    if m:
        prefix = m.group(0)
        level = {"E": "ERROR", "W": "WARNING", "I": "INFO", "V": "VERBOSE", "D": "DEBUG", "F": "ERROR"}.get(
            prefix.split()[4] if len(prefix.split()) > 4 else "", None)
        line = line[m.end():]
    line = line.strip()
    m = _LEVEL.match(line)
    if m:
        level = {"E": "ERROR", "W": "WARNING", "WARN": "WARNING", "I": "INFO"}.get(m.group(1), m.group(1))
        line = line[m.end():].strip()
    return line, level


def _stats(line: str) -> RunStats | None:
    if not line.startswith("count="):
        return None
    kv = {k: _f(v) for k, v in _KV.findall(line)}
    if "count" not in kv:
        return None
    avg = kv.get("avg", kv.get("curr"))
    if avg is None:
        return None
    return RunStats(count=int(kv["count"]), avg_us=avg, std_us=kv.get("std"), first_us=kv.get("first"),
                    curr_us=kv.get("curr"), min_us=kv.get("min"), max_us=kv.get("max"), p5_us=kv.get("p5"),
                    median_us=kv.get("median"), p95_us=kv.get("p95"))


def _table_rows(lines: list[str], start: int) -> tuple[list[list[str]], int]:
    """Tab-separated rows after a ``[node type]`` header line at ``start``; returns (rows, next index)."""
    rows: list[list[str]] = []
    i = start + 1
    while i < len(lines):
        raw = lines[i]
        text, _ = _clean(raw)
        if not text or text.startswith("=") or text.startswith("Number of nodes") or text.startswith("Timings"):
            break
        cells = [c.strip() for c in re.split(r"\t+", raw.split(":", 1)[1] if _LOGCAT.match(raw) else raw) if c.strip()]
        if len(cells) < 2:
            cells = text.split()
        rows.append(cells)
        i += 1
    return rows, i


def _pct(x: str) -> float:
    return _f(x.rstrip("%"))


def _op_row(cells: list[str]) -> OpRow | None:
    # [node type] [start] [first] [avg ms] [%] [cdf%] [mem KB] [times called] [Name]
    if len(cells) < 8:
        return None
    try:
        name = "\t".join(cells[8:]) if len(cells) > 8 else ""
        return OpRow(node_type=cells[0], name=name, start_ms=_f(cells[1]), first_ms=_f(cells[2]),
                     avg_ms=_f(cells[3]), percent=_pct(cells[4]), mem_kb=_f(cells[6]),
                     times_called=int(float(cells[7])))
    except ValueError:
        return None


def _type_row(cells: list[str]) -> OpTypeSummary | None:
    # [Node type] [count] [avg ms] [avg %] [cdf %] [mem KB] [times called]
    if len(cells) < 7:
        return None
    try:
        return OpTypeSummary(node_type=cells[0], count=int(cells[1]), avg_ms=_f(cells[2]), percent=_pct(cells[3]),
                             times_called=int(float(cells[6])))
    except ValueError:
        return None


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse the stdout+stderr of one ``benchmark_model`` run. Never raises on odd input:
    what is not found stays ``None`` / empty, and ``ok`` says whether the runs finished."""
    raw_lines = text.splitlines()
    cleaned = [_clean(x) for x in raw_lines]
    out: dict[str, Any] = {}
    stats_lines: list[tuple[int | None, RunStats]] = []
    pending_iterations: int | None = None
    params: dict[str, str] = {}
    errors: list[str] = []
    created: list[str] = []
    applied: list[str] = []
    unsupported: list[str] = []
    deleg: dict[str, Any] = {}
    ops: list[OpRow] = []
    op_types: list[OpTypeSummary] = []
    generation = "stats-only"
    # Profiling section: "none" before any header (old tools print the regular-run tables
    # without one), "init" (Benchmark Initialization, skipped), "regular".
    section = "none"
    in_unsupported = False
    i = 0
    while i < len(cleaned):
        line, level = cleaned[i]
        if in_unsupported:
            if (m := _GPU_SPLIT.search(line)) is not None:
                deleg["cpu_ops_after_split"] = int(m.group("cpu"))
                in_unsupported = False
                i += 1
                continue
            if re.match(r"^[A-Z0-9_]+(?: \(v\d+\))?:", line):
                unsupported.append(line.split(":", 1)[0].split(" (")[0])
                i += 1
                continue
            in_unsupported = False  # the list ended: this line is processed as usual
        if (m := _SUMMARY.search(line)) is not None:
            generation = "summary-v2"
            out.update(init_us=_f(m["init"]), first_inference_us=_f(m["first"]),
                       warmup_avg_us=None if m["warm"] in ("nan", "inf", "-inf") else _f(m["warm"]),
                       inference_avg_us=_f(m["inf"]))
        elif (m := _SUMMARY_OLD.search(line)) is not None:
            generation = "summary-v1"
            out.update(init_us=_f(m["init"]), warmup_avg_us=_f(m["warm"]), inference_avg_us=_f(m["inf"]))
        elif (m := _RUNNING.search(line)) is not None:
            pending_iterations = int(m["n"])
        elif (s := _stats(line)) is not None:
            stats_lines.append((pending_iterations, s))
            pending_iterations = None
        elif (m := _MEM.search(line)) is not None:
            out.update(memory_init_mb=_f(m["init"]), memory_overall_mb=_f(m["overall"]))
        elif (m := _MEM_PEAK.search(line)) is not None:
            out["memory_peak_mb"] = _f(m["peak"])
        elif (m := _MODEL_SIZE.search(line)) is not None:
            out["model_size_mb"] = _f(m["mb"])
        elif (m := _INIT_SESSION.search(line)) is not None:
            out["init_session_ms"] = _f(m["ms"])
        elif (m := _REPLACING.search(line)) is not None:
            deleg["replaced_nodes"] = deleg.get("replaced_nodes", 0) + int(m["n"])
            if m["m"]:
                deleg["total_nodes"] = int(m["m"])
            if m["parts"]:
                deleg["partitions"] = deleg.get("partitions", 0) + int(m["parts"])
            applied.append(m["name"])
        elif (m := _FULL.search(line)) is not None:
            deleg["coverage"] = "full"
            applied.append(m["name"])
        elif (m := _PARTIAL.search(line)) is not None:
            deleg["coverage"] = "partial"
            applied.append(m["name"])
        elif (m := _NONE.search(line)) is not None:
            deleg["coverage"] = "none"
        elif (m := _UNSUPPORTED_HEAD.search(line)) is not None:
            in_unsupported = True  # logged at error level, but it is a partition report, not a failure
            i += 1
            continue
        elif (m := _CREATED.search(line)) is not None:
            created.append(" ".join(x for x in (m["a"], m["b"]) if x))
        elif line.startswith("Operator-wise Profiling Info for Regular Benchmark Runs"):
            section = "regular"
        elif line.startswith("Profiling Info for Benchmark Initialization"):
            section = "init"
        elif "[node type]" in line and "[Name]" in line:
            rows, j = _table_rows(raw_lines, i)
            title = cleaned[i - 1][0] if i > 0 else ""
            if section != "init" and "Run Order" in title and not ops:
                ops = [r for r in (_op_row(c) for c in rows) if r is not None]
            i = j
            continue
        elif "[Node type]" in line and "[count]" in line:
            rows, j = _table_rows(raw_lines, i)
            if section != "init" and not op_types:
                op_types = [r for r in (_type_row(c) for c in rows) if r is not None]
            i = j
            continue
        elif (m := _PARAM.match(line)) is not None and level in (None, "INFO") and "://" not in line:
            params.setdefault(m["key"].strip(), m["val"].strip())
        if level == "ERROR" or any(h in line for h in _ERROR_HINTS):
            if line and not line.startswith("Note:"):
                errors.append(line)
        i += 1
    # The first stats line is the warm-up, the second the regular runs (older tools print the
    # warm-up line without "first=" when it ran once). One line alone is the regular runs only
    # when the summary says so; else it is a warm-up that never got further.
    warmup = runs = None
    requested = None
    if len(stats_lines) >= 2:
        warmup, (requested, runs) = stats_lines[0][1], stats_lines[1]
    elif len(stats_lines) == 1 and out.get("inference_avg_us") is not None:
        requested, runs = stats_lines[0]
    elif len(stats_lines) == 1:
        warmup = stats_lines[0][1]
    if out.get("inference_avg_us") is None and runs is not None:
        out["inference_avg_us"] = runs.avg_us
    if generation == "stats-only" and runs is None:
        generation = "unknown"
    ok = out.get("inference_avg_us") is not None and not (errors and runs is None and "inference_avg_us" not in out)
    delegate = DelegateReport(
        created=tuple(dict.fromkeys(created)), applied=tuple(dict.fromkeys(applied)),
        replaced_nodes=deleg.get("replaced_nodes"), total_nodes=deleg.get("total_nodes"),
        partitions=deleg.get("partitions"), coverage=deleg.get("coverage") or _coverage(deleg, unsupported),
        unsupported_ops=tuple(dict.fromkeys(unsupported)), cpu_ops_after_split=deleg.get("cpu_ops_after_split"))
    return BenchmarkOutput(ok=bool(ok), warmup=warmup, runs=runs, requested_runs=requested, ops=tuple(ops),
                           op_types=tuple(op_types), delegate=delegate, params=params, errors=tuple(errors),
                           generation=generation, **out)


def _coverage(deleg: dict[str, Any], unsupported: list[str]) -> str | None:
    n, m = deleg.get("replaced_nodes"), deleg.get("total_nodes")
    if n is not None and m:
        return "full" if n >= m else ("none" if n == 0 else "partial")
    if unsupported:
        return "partial"
    return None


# ---------------------------------------------------------------------------- statistics

_Z95 = 1.96
_Z90 = 1.2816


def latency_from_output(out: BenchmarkOutput) -> tuple[dict[str, float | int], dict[str, str]]:
    """Latency statistics in ms from the regular runs' stats line, and how each was derived.

    benchmark_model reports no per-run samples, only count/avg/std (and in newer versions
    p5/median/p95, and min/max). Where the tool gives a number we use it; where it does not,
    the derivation is named in the returned ``method`` dict so it lands in the provenance:
    median → the tool's median, else its avg; p10/p90 → mean ∓ 1.2816·std (a normal
    approximation) clipped to [min, max]; the 95% CI of the median → median ±
    1.96·1.2533·std/√n (asymptotic standard error of a normal sample's median).
    Raises ValueError when the regular runs did not finish."""
    r = out.runs
    if r is None:
        if out.inference_avg_us is None:
            raise ValueError("benchmark_model output has no inference timings")
        r = RunStats(count=1, avg_us=out.inference_avg_us)
    mean = r.avg_us / 1000.0
    std = (r.std_us or 0.0) / 1000.0
    n = max(int(r.count), 1)
    method: dict[str, str] = {"source": "benchmark_model aggregate stats (no per-run samples)"}
    if r.median_us is not None:
        median = r.median_us / 1000.0
        method["median"] = "benchmark_model median"
    else:
        median = mean
        method["median"] = "benchmark_model avg (the tool prints no median)"
    lo_clip = (r.min_us / 1000.0) if r.min_us is not None else 0.0
    hi_clip = (r.max_us / 1000.0) if r.max_us is not None else math.inf
    p10 = min(max(mean - _Z90 * std, lo_clip), median)
    p90 = max(min(mean + _Z90 * std, hi_clip), median)
    method["p10_p90"] = "normal approximation mean ∓ 1.2816·std, clipped to [min, max]"
    if r.std_us is None:
        method["std"] = "not reported (one run); 0"
    half = _Z95 * 1.2533 * std / math.sqrt(n)
    method["ci95"] = "median ± 1.96·1.2533·std/√n (normal approximation)"
    stats: dict[str, float | int] = {
        "median_ms": median, "mean_ms": mean, "p10_ms": p10, "p90_ms": p90, "std_ms": std,
        "cv": std / mean if mean > 0 else 0.0, "n": n, "n_outliers": 0,
        "ci_low_ms": max(median - half, 0.0), "ci_high_ms": median + half,
    }
    return stats, method


def classify_failure(out: BenchmarkOutput, text: str) -> str:
    """``model`` when the tool rejected the model file, ``delegate`` when a delegate could not
    be applied, ``runtime`` otherwise (crash, unknown error)."""
    blob = "\n".join(out.errors) or text
    model_signs = ("not a valid Flatbuffer", "Failed to mmap model", "Failed to load model", "Could not open",
                   "Failed to allocate tensors", "failed to prepare", "Failed to construct interpreter",
                   "Didn't find op for builtin opcode", "Encountered unresolved custom op", "Invalid model")
    if any(s in blob for s in ("Failed to apply", "delegate failure", "Failed to create", "Failed to load delegate",
                               "Could not load delegate", "external delegate")) and "Flatbuffer" not in blob:
        return "delegate"
    if any(s in blob for s in model_signs):
        return "model"
    return "runtime"
