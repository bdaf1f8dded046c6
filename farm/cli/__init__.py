"""The ``hwfarm`` command.

Global options: ``--registry PATH`` (env ``HWFARM_REGISTRY``, default ``./devices.yaml``),
``--db PATH`` (env ``HWFARM_DB``, default ``./hwfarm.db``), ``--debug``. Exit codes: 0 ok,
2 bad input (file, registry, model, arguments), 1 device or runtime failure. Errors are one
line on stderr; ``--debug`` adds the traceback.

Command groups of the upper layers (predictors, nas, compress) and third-party packages
plug in through the ``hwfarm.commands`` entry-point group: ``name = pkg.module:typer_app``.
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from farm import __version__
from farm.errors import DeviceUnavailable, HwfarmError, InputError

app = typer.Typer(
    name="hwfarm",
    help="On-device profiling farm and latency/energy predictors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
devices_app = typer.Typer(help="The device registry (devices.yaml): list, check, add, remove.", no_args_is_help=True)
dataset_app = typer.Typer(help="The measurement dataset (SQLite): show and export.", no_args_is_help=True)
jobs_app = typer.Typer(help="The job queue: list and run queued jobs.", no_args_is_help=True)
zoo_app = typer.Typer(help="Built-in example models, written as ONNX files.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
app.add_typer(dataset_app, name="dataset")
app.add_typer(jobs_app, name="jobs")
app.add_typer(zoo_app, name="zoo")


def _sim_app() -> typer.Typer:
    from farm.cli.sim import app as sim

    return sim


app.add_typer(_sim_app(), name="sim")

# Piped output (logs, CI) gets a wide console instead of rich's 80-column default.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


@dataclass
class _State:
    registry: Path = Path("devices.yaml")
    db: Path = Path("hwfarm.db")
    debug: bool = False


STATE = _State()


def _version(value: bool) -> None:
    if value:
        print(f"hwfarm {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    registry: Path = typer.Option(Path("devices.yaml"), "--registry", envvar="HWFARM_REGISTRY",
                                  help="Device registry file."),
    db: Path = typer.Option(Path("hwfarm.db"), "--db", envvar="HWFARM_DB", help="Dataset file (SQLite)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    STATE.registry, STATE.db, STATE.debug = registry, db, debug


def _registry():
    from farm.registry.spec import load_registry

    return load_registry(STATE.registry)


def _store():
    from farm.store.sqlite import SqliteStore

    return SqliteStore(STATE.db)


def emit_json(obj: Any) -> None:
    """One JSON document on stdout (also for plugin commands' ``--json``)."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 10 else f"{x:.2f}" if x < 1000 else f"{x:.0f}"


def _fmt_count(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


# ---------------------------------------------------------------------------- devices


@devices_app.command("list")
def devices_list(as_json: bool = typer.Option(False, "--json", help="One JSON array on stdout.")) -> None:
    """List the devices in the registry."""
    reg = _registry()
    rows = [d.public_dict() | {"kind": d.kind} for d in reg.devices]
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"{len(rows)} device(s) in {reg.path}", title_justify="left")
    for col in ("name", "kind", "url", "runtime", "threads", "tags", "notes"):
        table.add_column(col)
    for d in reg.devices:
        table.add_row(d.name, d.kind, d.url, d.runtime or "-", str(d.threads), ",".join(d.tags) or "-",
                      (d.notes or "").strip().splitlines()[0] if d.notes else "")
    out.print(table)


def _holders(specs: list[Any]) -> dict[str, str]:
    """Devices whose lease a live process holds in the dataset (a measurement is running)."""
    if not STATE.db.exists():
        return {}
    store = _store()
    try:
        return {s.name: h for s in specs if (h := store.device_holder(s.name))}
    finally:
        store.close()


def _check(spec: Any, holder: str | None = None, noise_s: float | None = None) -> "tuple[Any, dict[str, Any] | None]":
    """The device's health, and with ``noise_s`` its noise scan and diagnosis (or a ``note``
    saying why there is none, or an ``error``) from the same connection."""
    from farm.devices import Health, open_device

    if holder is not None:  # contacting it could disturb the measurement running there
        return (Health(spec.name, "busy", f"held by {holder} (a job is measuring on it); not contacted", state="busy"),
                None if noise_s is None else {"note": "busy: a job is measuring on it; noise not measured"})
    try:
        device = open_device(spec)
    except DeviceUnavailable as e:
        return (Health(spec.name, "unavailable", str(e), state="unknown"),
                None if noise_s is None else {"note": "device not opened here; noise not measured"})
    try:
        health = device.check()
        return health, None if noise_s is None else _noise(device, health, noise_s)
    finally:
        device.close()


def _noise(device: Any, health: Any, seconds: float) -> dict[str, Any]:
    from farm.doctor import diagnose
    from farm.errors import DeviceError

    if device.info().get("simulated"):
        return {"note": "simulated device: no noise to measure"}
    if not hasattr(device, "noise"):
        return {"note": f"the noise check needs an agent device (local://, ssh://); "
                        f"{device.spec.kind}:// devices do not run the agent"}
    if health.status == "unreachable":
        return {"note": "unreachable; noise not measured"}
    try:
        got = device.noise(seconds)
    except DeviceError as e:
        return {"error": str(e)}
    scan, facts = dict(got["noise"]), dict(got.get("facts") or {})
    return scan | diagnose(scan, facts, affinity=device.spec.affinity).to_json()


def _noise_table(name: str, noise: dict[str, Any]) -> None:
    if "verdict" not in noise:
        note = noise.get("note") or f"[red]noise check failed[/]: {escape(str(noise.get('error')))}"
        out.print(f"{escape(name)}: {note}")
        return

    def pct(key: str) -> str:
        x = noise.get(key)
        return "-" if x is None else f"{100 * x:.1f}%"

    def cpus(key: str) -> str:
        x = noise.get(key)
        return "not visible" if x is None else ",".join(map(str, x)) or "none"

    states = noise.get("states") or {}
    turbo = noise.get("turbo")
    rows = [
        ("reference median / min / p90", f"{noise['ref_median_us']:.1f} / {noise['ref_min_us']:.1f} / "
                                         f"{noise['ref_p90_us']:.1f} µs ({noise['reads']} readings)"),
        ("window CV", f"{pct('window_cv')} over {noise['windows']} windows of {noise['window_s']} s"),
        ("slow windows", f"{pct('slow_share')} (above 1.25x the floor, {noise['floor_us']:.1f} µs)"),
        ("states seen", f"{noise['states_seen']}: " + ", ".join(f"{k.replace('_', ' ')} {100 * v:.0f}%"
                                                              for k, v in states.items())),
        ("slow single readings", pct("ref_slow_read_share")),
        ("speed probe", f"fast {noise['probe_fast_us']:.2f} µs, slow {pct('probe_slow_share')} of readings"),
        ("steal / iowait", f"{pct('steal_share')} / {pct('iowait_share')}"),
        ("load average", " ".join(f"{x:.2f}" for x in noise["loadavg"]) if noise.get("loadavg") else "-"),
        ("other runnable tasks", "-" if noise.get("other_runnable") is None else f"{noise['other_runnable']:.2f}"),
        ("top other processes", ", ".join(f"{p['name']} " + (f"{100 * p['cpu_share']:.0f}%" if p["cpu_share"] >= 0.01
                                                              else "<1%") for p in noise["top_processes"])
         if noise.get("top_processes") else "-" if noise.get("top_processes") is None else "none"),
        ("governor", ", ".join(noise["governors"]) if noise.get("governors") else "not visible"),
        ("turbo/boost", "not visible" if turbo is None else "on" if turbo else "off"),
        ("isolated CPUs", cpus("isolated_cpus")),
        ("CPUs usable", cpus("cpus_usable")),
    ]
    style = {"quiet": "green", "noisy": "yellow"}.get(noise["verdict"], "red")
    table = Table(title=f"{escape(name)}: noise over {noise['seconds']} s: [{style}]{noise['verdict']}[/]",
                  title_justify="left")
    table.add_column("figure")
    table.add_column("value")
    for figure, value in rows:
        table.add_row(figure, escape(value))
    out.print(table)
    for line in noise["findings"]:
        out.print(f"  - {escape(line)}")
    for line in noise["advice"]:
        out.print(f"  [bold]→[/] {escape(line)}")


@devices_app.command("check")
def devices_check(
    names: Optional[list[str]] = typer.Argument(None, help="Devices to check (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per device on stdout."),
    noise: bool = typer.Option(False, "--noise",
                               help="Also measure how noisy each agent device is right now (the reference "
                                    "workload, steal time, other load, governor) and say what to do about it."),
    seconds: float = typer.Option(3.0, "--seconds", min=0.5, max=60.0,
                                  help="--noise: seconds to measure each device for (it keeps one core busy)."),
) -> None:
    """Check that devices are reachable and can run their runtime, with each one's state (online,
    offline, unauthorized, busy: a job holds it). Exit 1 if any is not ok (or, with --noise, if
    an agent device's noise could not be measured)."""
    reg = _registry()
    specs = [reg.get(n) for n in names] if names else list(reg.devices)
    holders = _holders(specs)
    checked = [_check(s, holders.get(s.name), seconds if noise else None) for s in specs]
    results = [h for h, _ in checked]
    if as_json:
        for h, scan in checked:
            emit_json(h.to_json() | ({"noise": scan} if scan is not None else {}))
    else:
        table = Table(title="device health", title_justify="left")
        for col in ("device", "state", "status", "detail"):
            table.add_column(col)
        style = {"ok": "green", "unavailable": "yellow"}
        for h in results:
            table.add_row(escape(h.device), h.connection, f"[{style.get(h.status, 'red')}]{h.status}[/]",
                          escape(h.detail))
        out.print(table)
        for h, scan in checked:
            if scan is not None:
                _noise_table(h.device, scan)
    if not all(h.ok for h in results) or any(scan is not None and "error" in scan for _, scan in checked):
        raise typer.Exit(1)


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {pair!r}: expected key=value")
        settings[key.strip()] = value
    return settings


@devices_app.command("add")
def devices_add(
    name: str = typer.Argument(..., help="Unique device name."),
    url: str = typer.Argument(..., help="local://cpu, ssh://user@host[:port], adb://host:port, serial:///dev/tty…, sim://profile"),
    sets: Optional[list[str]] = typer.Option(None, "--set", help="Extra field, key=value (repeatable): --set threads=2"),
) -> None:
    """Add a device to the registry (comments and order in the file are kept)."""
    from farm.registry.edit import add_device

    spec = add_device(STATE.registry, name, url, _parse_sets(sets or []))
    err.print(f"added {spec.name} ({spec.url}) to {STATE.registry}")


@devices_app.command("remove")
def devices_remove(name: str = typer.Argument(..., help="Device to remove.")) -> None:
    """Remove a device from the registry. Its measurements stay in the dataset."""
    from farm.registry.edit import remove_device

    remove_device(STATE.registry, name)
    err.print(f"removed {name} from {STATE.registry}")


# ---------------------------------------------------------------------------- inspect


@app.command()
def inspect(
    model: Path = typer.Argument(..., help="ONNX or TFLite model file."),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Show a model's layers with shapes, MACs, parameters and bytes moved."""
    from farm.workload import load_workload

    w = load_workload(model)
    g = w.graph
    if as_json:
        emit_json({"model": str(model), "format": w.format, "workload": w.hash,
                    "macs": g.macs, "params": g.params, "bytes_moved": g.bytes_moved,
                    "inputs": [t.to_dict() for t in g.inputs], "outputs": [t.to_dict() for t in g.outputs],
                    "nodes": [{"name": n.name, "op": n.op, "inputs": [t.to_dict() for t in n.inputs],
                               "outputs": [t.to_dict() for t in n.outputs], "macs": n.macs, "params": n.params,
                               "bytes_moved": n.bytes_moved, "dtype": n.dtype, "attrs": n.attrs} for n in g.nodes]})
        return
    table = Table(title=f"{model} ({w.format}, {w.short_hash})", title_justify="left")
    for col, just in (("#", "right"), ("name", "left"), ("op", "left"), ("output", "left"),
                      ("dtype", "left"), ("MACs", "right"), ("params", "right"), ("bytes", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for i, n in enumerate(g.nodes):
        shape = "x".join(map(str, n.outputs[0].shape)) if n.outputs else "-"
        table.add_row(str(i), n.name, n.op, shape, n.dtype, _fmt_count(n.macs), _fmt_count(n.params),
                      _fmt_count(n.bytes_moved))
    table.add_section()
    table.add_row("", f"{len(g.nodes)} nodes", "", "", "", _fmt_count(g.macs), _fmt_count(g.params),
                  _fmt_count(g.bytes_moved))
    out.print(table)


# ---------------------------------------------------------------------------- profile


def _progress(total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True, disable=total == 0)


@app.command()
def profile(
    models: list[Path] = typer.Argument(..., help="ONNX or TFLite model files."),
    device: str = typer.Option(..., "--device", "-d", help="Device name from the registry."),
    runs: Optional[int] = typer.Option(None, "--runs", min=1, help="At most this many timed runs per round, fewer once the round's median is pinned down (500)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", min=0, help="Warm-up runs before timing each round, 0: none (10; --paired 5)."),
    warmup_time: Optional[float] = typer.Option(None, "--warmup-time", min=0.0, help="Warm up each round for at least this many seconds (0.05; --paired 0.03)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Runtime threads (default: the device entry's)."),
    min_runs: Optional[int] = typer.Option(None, "--min-runs", min=1, help="Timed runs per round before its stopping rule is applied (10; --paired 5)."),
    min_time: Optional[float] = typer.Option(None, "--min-time", min=0.0, help="Seconds of timed runs per round before its stopping rule is applied (0.15; --paired 0.08)."),
    target_ci: Optional[float] = typer.Option(None, "--target-ci", min=0.0,
                                              help="Stop when the 95%% CI is within ±this fraction: each round's, and "
                                                   "(quiet estimator) the between-round interval of the record; 0: "
                                                   "always --runs, --max-rounds (0.02)."),
    max_time: Optional[float] = typer.Option(None, "--max-time", min=0.01, help="Seconds of timed runs per round at most (1)."),
    gate: float = typer.Option(1.25, "--gate", min=0.0,
                               help="Contention gate: time runs only while a speed probe reads within this factor "
                                    "of its fastest, and leave out runs it saw slowed (0: off)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.1, help="Per-job deadline in seconds (default: the entry's timeout_s)."),
    rounds: Optional[int] = typer.Option(None, "--rounds", min=1,
                                         help="Rounds per model, each in a fresh runtime session, interleaved with "
                                              "the other models: the quiet rounds wanted (default 3; pooled: exactly "
                                              "these; --paired: each model's, default 12)."),
    max_rounds: Optional[int] = typer.Option(None, "--max-rounds", min=1,
                                             help="Quiet estimator: at most this many rounds per model while too few "
                                                  "ran quiet or the interval is wider than --target-ci (default 12)."),
    estimator: Optional[str] = typer.Option(None, "--estimator",
                                            help="quiet (default on real devices): the rounds that ran in the "
                                                 "machine's quiet state (by the reference workload), with a "
                                                 "between-round interval; pooled (default on simulated devices): "
                                                 "every run of every round."),
    paired: bool = typer.Option(False, "--paired",
                                help="Two models, measured in alternating rounds: report B/A with its interval."),
    force: bool = typer.Option(False, "--force", help="Measure again even if the dataset has this measurement."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per model on stdout (--paired: one object)."),
) -> None:
    """Measure models on a device; results go to the dataset and to stdout."""
    import dataclasses

    from farm.api import PAIRED_POLICY, PAIRED_ROUNDS, PROFILE_POLICY
    from farm.api import compare as run_compare
    from farm.api import profile as run_profile
    from farm.measurement import ESTIMATORS
    from farm.scheduler.core import JobEvent

    if 0 < gate <= 1:
        raise InputError(f"--gate {gate}: give 0 (off) or a factor above 1 (default 1.25)")
    if estimator is not None and estimator not in ESTIMATORS:
        raise InputError(f"--estimator {estimator}: choose one of {', '.join(ESTIMATORS)}")
    if paired and len(models) != 2:
        raise InputError(f"--paired compares two models (A B, reported as B/A); got {len(models)}")
    if paired and estimator == "pooled":
        raise InputError("--paired pairs rounds judged by the reference workload: use --estimator quiet")
    if max_rounds is not None and (estimator == "pooled" or paired):
        raise InputError("--max-rounds adds rounds under the quiet estimator only (not with pooled or --paired)")
    if rounds is not None and max_rounds is not None and max_rounds < rounds:
        raise InputError(f"--max-rounds {max_rounds} is below --rounds {rounds}")
    if paired and rounds is not None and rounds < 2:
        raise InputError("--paired needs at least 2 rounds")
    n_rounds = rounds or (PAIRED_ROUNDS if paired else None)
    # Per-round flags given override the command's policy (--paired has shorter rounds).
    base = PAIRED_POLICY if paired else PROFILE_POLICY
    given: dict[str, Any] = {k: v for k, v in (("warmup", warmup), ("warmup_s", warmup_time), ("min_runs", min_runs),
                               ("min_time_s", min_time), ("max_runs", runs), ("max_time_s", max_time),
                               ("target_ci", target_ci)) if v is not None}
    policy = dataclasses.replace(base, **given, gate=gate)
    if policy.min_runs > policy.max_runs:
        policy = dataclasses.replace(policy, min_runs=policy.max_runs)
    with _progress(len(models)) as bar:
        what = f" ({n_rounds} paired rounds)" if paired else ""
        task = bar.add_task(f"profiling on {device}{what}", total=len(models))

        def on_event(e: JobEvent) -> None:
            if e.kind in ("done", "failed"):
                bar.advance(task)
            elif e.kind == "round":
                bar.update(task, description=f"profiling on {device}: {e.message}")
            if e.kind in ("retry", "waiting", "failed"):
                bar.console.print(f"[yellow]{e.kind}[/]: {escape(e.message)}", markup=True, highlight=False)

        common = dict(registry=STATE.registry, db=STATE.db, policy=policy, threads=threads, timeout_s=timeout,
                      on_event=on_event,
                      on_requeue=lambda ids: err.print(f"re-queued {len(ids)} job(s) left running by a process that died"))
        if paired:
            comparison = run_compare(str(models[0]), str(models[1]), device=device, rounds=n_rounds or PAIRED_ROUNDS,
                                     **common)  # type: ignore[arg-type]
            results = [comparison.a, comparison.b]
        else:
            comparison = None
            results = run_profile([str(m) for m in models], device=device, force=force, rounds=n_rounds,
                                  max_rounds=max_rounds, estimator=estimator, **common)  # type: ignore[arg-type]

    done = [(r, r.measurement) for r in results if r.measurement is not None]
    if as_json:
        if comparison is not None:
            emit_json(comparison.to_json())
        else:
            for r, m in done:
                emit_json(m.to_json(model=r.model) | {"source": r.source})
    elif done:
        spec_url = done[0][1].provenance.get("device_url", "")
        table = Table(title=f"latency on {device} ({spec_url}), milliseconds", title_justify="left")
        energy = any(m.energy_mj is not None for _, m in done)
        cols = ["model", "runtime", "thr", "median", "95% CI", "p90", "CV %", "n", "rounds", "stop"]
        for col in cols + (["energy mJ"] if energy else []) + [""]:
            table.add_column(col, justify="left" if col in ("model", "runtime", "stop", "rounds", "") else "right")
        for r, m in done:
            s = m.stats
            kept = m.provenance.get("rounds") or []
            quiet = sum(1 for k in kept if k.get("quiet"))
            n_rounds_s = (f"{quiet}/{len(kept)} quiet" if m.provenance.get("estimator") == "quiet"
                          else str(len(kept) or 1))
            ci = f"±{100 * max(s.median_ms - s.ci_low_ms, s.ci_high_ms - s.median_ms) / s.median_ms:.1f}%" \
                if s.median_ms > 0 else "-"
            stop = "[red]unstable[/]" if m.provenance.get("unstable") else m.stop_reason
            table.add_row(escape(Path(r.model).name), f"{m.settings.runtime} {m.provenance.get('runtime_version', '')}",
                          str(m.settings.threads), _fmt_ms(s.median_ms), ci, _fmt_ms(s.p90_ms), f"{100 * s.cv:.1f}",
                          str(s.n), n_rounds_s, stop,
                          *((f"{m.energy_mj:.4g}" if m.energy_mj is not None else "-",) if energy else ()), r.source)
        out.print(table)
        for r, m in done:
            if m.provenance.get("unstable"):
                err.print(f"{escape(Path(r.model).name)}: unstable: {escape(str(m.provenance.get('unstable_reason')))}"
                          " (hwfarm devices check --noise says why a machine is slow)")
        if comparison is not None:
            c = comparison.ratio
            out.print(f"{escape(Path(results[1].model).name)} / {escape(Path(results[0].model).name)} = "
                      f"[bold]{c.ratio:.4f}[/] (95% CI {c.ci_low:.4f}–{c.ci_high:.4f}, {c.pairs} paired rounds"
                      + (", [red]unstable[/]: fewer than 3 pairs ran quiet" if c.unstable else "") + ")")
        err.print(f"stored in {STATE.db} (hwfarm dataset show --db {STATE.db})")
    failed = [r.failure for r in results if r.failure is not None]
    for f in failed:
        err.print(f"hwfarm: error: {f.message}", markup=False, highlight=False)
    if failed:
        raise typer.Exit(max(f.exit_code for f in failed))


# ---------------------------------------------------------------------------- dataset

_SHOW_COLS = ("id", "device", "model", "runtime", "threads", "median_ms", "p90_ms", "cv", "n", "n_outliers",
              "simulated", "created_at")


@dataset_app.command("show")
def dataset_show(
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Only this device."),
    limit: int = typer.Option(50, "--limit", min=1, help="Newest N measurements."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per measurement on stdout."),
) -> None:
    """Show the newest measurements in the dataset."""
    _require_db()
    rows = _store().dataset_rows(device=device)[-limit:]
    if as_json:
        for r in rows:
            emit_json({k: v for k, v in r.items() if k != "samples_ms"} | {"samples_ms": json.loads(r["samples_ms"])})
        return
    table = Table(title=f"{STATE.db}: {len(rows)} newest measurement(s)", title_justify="left")
    for col in _SHOW_COLS:
        table.add_column(col, justify="right" if col in ("id", "threads", "median_ms", "p90_ms", "cv", "n", "n_outliers") else "left")
    for r in rows:
        table.add_row(str(r["id"]), r["device"], r["model"], f"{r['runtime']} {r['runtime_version'] or ''}",
                      str(r["threads"]), _fmt_ms(r["median_ms"]), _fmt_ms(r["p90_ms"]), f"{100 * r['cv']:.1f}%",
                      str(r["n"]), str(r["n_outliers"]), "sim" if r["simulated"] else "real", r["created_at"])
    out.print(table)


def _require_db() -> None:
    if not STATE.db.exists():
        raise InputError(f"{STATE.db}: no dataset here yet (run `hwfarm profile` first, or pass --db)")


@dataset_app.command("export")
def dataset_export(
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or parquet."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default hwfarm-dataset.<format>)."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Only this device."),
) -> None:
    """Export measurements (one row each, raw samples as a JSON list) to CSV or Parquet."""
    from farm.store.export import export_rows

    if fmt not in ("csv", "parquet"):
        raise InputError(f"--format {fmt!r}: expected csv or parquet")
    _require_db()
    rows = _store().dataset_rows(device=device)
    path = out_path or Path(f"hwfarm-dataset.{fmt}")
    export_rows(rows, path, fmt)
    err.print(f"wrote {len(rows)} measurement(s) to {path}")


# ---------------------------------------------------------------------------- jobs


@jobs_app.command("list")
def jobs_list(
    status: Optional[str] = typer.Option(None, "--status", help="queued, running, done or failed."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per job on stdout."),
) -> None:
    """List jobs in the queue and their state."""
    _require_db()
    jobs = _store().jobs(status=status)
    if as_json:
        for j in jobs:
            emit_json({"id": j.id, "device": j.device, "workload": j.workload, "status": j.status,
                        "attempts": j.attempts, "max_attempts": j.max_attempts, "error": j.error,
                        "measurement_id": j.measurement_id, "settings": j.settings.to_dict()})
        return
    table = Table(title=f"{len(jobs)} job(s) in {STATE.db}", title_justify="left")
    for col in ("id", "device", "workload", "status", "attempts", "error"):
        table.add_column(col)
    for j in jobs:
        table.add_row(str(j.id), j.device, j.workload[:12], j.status, f"{j.attempts}/{j.max_attempts}", j.error or "")
    out.print(table)


@jobs_app.command("run")
def jobs_run() -> None:
    """Run every queued job (re-queueing jobs whose process died) on the registry's devices."""
    from farm.scheduler.core import JobEvent, Scheduler

    _require_db()
    reg = _registry()
    store = _store()
    queued_devices = sorted({j.device for j in store.jobs(status="queued")} |
                            {j.device for j in store.jobs(status="running")})
    specs = [reg.get(n) for n in queued_devices]
    def on_event(e: JobEvent) -> None:
        if e.kind in ("failed", "retry", "waiting"):
            err.print(f"{e.kind}: {e.message}", markup=False, highlight=False)

    sched = Scheduler(store, on_event=on_event)
    n = len(sched.requeue_stale())
    report = sched.run(specs)
    err.print(f"re-queued {n}, done {len(report.done)}, failed {len(report.failed)}")
    if report.failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------- zoo


@zoo_app.command("list")
def zoo_list(json_out: bool = typer.Option(False, "--json", help="One JSON object per model.")) -> None:
    """List the demo models and the reference networks (with MACs and params at their defaults)."""
    from farm.zoo.nets import NETS
    from farm.zoo.onnx_models import DEMO_MODELS

    rows: list[dict[str, Any]] = [{"name": n, "kind": "demo", "description": "small example model (ONNX)"}
                                  for n in DEMO_MODELS]
    for name, spec in NETS.items():
        g = spec.builder(**spec.fixed)
        rows.append({"name": name, "kind": "net", "description": spec.description, "macs": g.macs,
                     "params": g.params, "input_shape": list(g.inputs[0].shape),
                     "options": spec.options()})
    if json_out:
        emit_json(rows)
        return
    table = Table(title="zoo (hwfarm zoo export NAME [--set key=value])", title_justify="left")
    for col in ("name", "kind", "MMACs", "params", "input", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["kind"], f"{r['macs'] / 1e6:.1f}" if "macs" in r else "",
                      f"{r['params']:,}" if "params" in r else "",
                      "×".join(map(str, r["input_shape"])) if "input_shape" in r else "", r["description"])
    out.print(table)


@zoo_app.command("export")
def zoo_export(
    names: list[str] = typer.Argument(..., help="Model names (see `hwfarm zoo list`), or 'all' (the demo models)."),
    out_dir: Path = typer.Option(Path("."), "--out-dir", "-o", help="Directory for the .onnx files."),
    sets: list[str] = typer.Option([], "--set", help="Option of the reference nets named, key=value "
                                   "(e.g. alpha=0.5, resolution=160, classes=10); repeatable."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights of reference nets."),
) -> None:
    """Write demo models and reference networks as ONNX files (random weights: for latency, not accuracy)."""
    from farm.zoo.nets import NETS, build_net
    from farm.zoo.onnx_models import DEMO_MODELS, export_demo_model

    chosen = list(DEMO_MODELS) if names == ["all"] else names
    for name in chosen:
        if name not in DEMO_MODELS and name not in NETS:
            raise InputError(f"unknown zoo model {name!r}; known: {', '.join([*DEMO_MODELS, *NETS])}")
    options = _parse_sets(sets)
    if options and not any(n in NETS for n in chosen):
        raise InputError("--set applies to reference nets only (see `hwfarm zoo list`)")
    graphs = {n: build_net(n, **options) for n in chosen if n in NETS}  # every error before any file
    for g in graphs.values():
        if g.inputs[0].dtype != "float32":
            raise InputError(f"{g.name}: only float32 nets export to ONNX (dtype={g.inputs[0].dtype})")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        if name in DEMO_MODELS:
            path = out_dir / f"{name}.onnx"
            export_demo_model(name, path)
        else:
            suffix = "".join(f"_{k}-{v}" for k, v in sorted(options.items()))
            path = _write_onnx(graphs[name], out_dir / f"{name}{suffix}.onnx", seed=seed)
        out.print(str(path))


def _write_onnx(graph: Any, path: Path, *, seed: int = 0) -> Path:
    """Export a graph to ONNX and write it atomically (no partial file on failure)."""
    import os
    import tempfile

    import onnx

    from farm.formats.onnx_export import graph_to_onnx

    model = graph_to_onnx(graph, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# ---------------------------------------------------------------------------- plugins, entry point


_GROUPS = {"devices": devices_app, "dataset": dataset_app, "jobs": jobs_app, "zoo": zoo_app}


def _load_plugins() -> None:
    """Mount the ``hwfarm.commands`` entry points. The entry's name says where:
    ``name = pkg.mod:typer_app`` adds a command group, ``name = pkg.mod:function`` a
    top-level command, and ``group.name = pkg.mod:function`` a command inside one of the
    built-in groups (``dataset.build`` → ``hwfarm dataset build``)."""
    for ep in entry_points(group="hwfarm.commands"):
        try:
            obj = ep.load()
            parent_name, _, name = ep.name.rpartition(".")
            parent = _GROUPS[parent_name] if parent_name else app
            if isinstance(obj, typer.Typer):
                parent.add_typer(obj, name=name)
            else:
                parent.command(name)(obj)
        except Exception as e:  # a broken plugin must not take the whole command down
            print(f"hwfarm: warning: command group {ep.name!r} ({ep.value}) failed to load: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    from typer.exceptions import Abort, Exit, TyperException

    _load_plugins()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        rc = app(args=args, prog_name="hwfarm", standalone_mode=False)
        # Without standalone mode, typer returns the code of a `raise typer.Exit(code)`.
        sys.exit(rc if isinstance(rc, int) else 0)
    except Exit as e:
        sys.exit(e.exit_code)
    except Abort:
        print("hwfarm: aborted", file=sys.stderr)
        sys.exit(130)
    except TyperException as e:  # usage errors: typer prints them with the usage line
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            print(f"hwfarm: error: {e.format_message()}", file=sys.stderr)
        sys.exit(e.exit_code if e.exit_code else 2)
    except HwfarmError as e:
        if debug:
            traceback.print_exc()
        print(f"hwfarm: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("hwfarm: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"hwfarm: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    # `python -m farm.cli`: run the canonical module, so plugin commands that read its global
    # options (farm.cli.STATE) see the ones given on this command line.
    from farm.cli import main as _main

    _main()
