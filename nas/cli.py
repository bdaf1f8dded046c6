"""``hwfarm nas …`` (plugged in through the ``hwfarm.commands`` entry point)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(help="Search spaces: export architectures as models.", no_args_is_help=True)

# Where each space's shared table lives (relative to the data folder), and its env override.
_TABLES = {"nb201": ("nb201-latency/latency_ms.csv", "HWFARM_NB201_CSV"),
           "fbnet": ("fbnet-latency/latency_ms.csv", "HWFARM_FBNET_CSV")}


def _find_table(space: str) -> Path:
    """The shared latency CSV of a space: $HWFARM_<SPACE>_CSV, ./../shared/data/…, or the
    ``shared`` folder next to this checkout."""
    from nas.objectives import shared_table

    rel, env = _TABLES[space]
    return shared_table(rel, env, f"the {space} table (pass --table PATH)")


@app.command()
def export(
    space: str = typer.Option(..., "--space", help="Search space (nb201, fbnet) or a reference net of "
                              "`hwfarm zoo list` (mobilenet_v2, resnet18, ds_cnn, ...)."),
    arch: str = typer.Option(..., "--arch", help="Architecture string or index (with a table); for a "
                             "reference net, its options (alpha=0.5,resolution=160) or 'default'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .onnx, or .tflite (LiteRT's layout: NHWC, BN "
                             "folded, activations fused)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, or int8 (full-integer .tflite, what int8-only "
                              "accelerators and MCUs take)."),
    table: Optional[Path] = typer.Option(None, "--table", help="CSV to look indices up in (default: the "
                                         "space's table in ../shared/data when present)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
) -> None:
    """Write one architecture of a space (or one reference net) as an ONNX or .tflite file any tool can profile."""

    from farm.errors import InputError
    from farm.formats.onnx_export import graph_to_onnx
    from farm.zoo.nets import NETS, build_net, parse_net_options
    from farm.zoo.spaces import SPACES

    if space in SPACES:
        s = SPACES[space]
        if table is None and arch.strip().isdigit():
            table = _find_table(space)
        elif table is not None and not table.is_file():
            raise InputError(f"{table}: no such file")
        arch_str = s.resolve(arch, table=table)
        graph = s.to_graph(arch_str)
        what = f"{space} {arch_str}"
    elif space in NETS:
        graph = build_net(space, **parse_net_options(arch))
        what = f"{space} {arch.strip() or 'default'}"
    else:
        raise InputError(f"unknown space {space!r}; known: {', '.join(SPACES)} or a reference net: "
                         f"{', '.join(NETS)}")
    if graph.inputs[0].dtype != "float32":
        raise InputError(f"{what}: only float32 graphs export (dtype={graph.inputs[0].dtype})")
    if out.suffix not in (".onnx", ".tflite"):
        raise InputError(f"--out {out}: expected a .onnx or .tflite file name")
    if dtype not in ("float32", "int8") or (dtype != "float32" and out.suffix == ".onnx"):
        raise InputError(f"--dtype {dtype!r}: expected float32, or int8 with a .tflite --out")
    if out.suffix == ".tflite":
        from farm.formats.tflite_export import graph_to_tflite

        data = graph_to_tflite(graph, dtype=dtype, seed=seed)
        what += f", {dtype} .tflite"
    else:
        data = graph_to_onnx(graph, seed=seed).SerializeToString()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    typer.echo(f"wrote {out} ({what}; {graph.macs / 1e6:.1f} M MACs, {graph.params:,} params)", err=True)


# ---------------------------------------------------------------------------- search

_ACCURACY = ("table", "proxy", "train", "predictor")


def _search_spaces() -> list[str]:
    """Registered spaces with search parameters."""
    from farm.zoo.spaces import SPACES
    from nas.params import choices

    out = []
    for name in SPACES:
        try:
            choices(name)
        except Exception:  # noqa: BLE001 - a space without parameters is not searchable
            continue
        out.append(name)
    return out


@app.command("search")
def search_cmd(
    ctx: typer.Context,
    space: str = typer.Option(..., "--space", help="Search space: nb201, fbnet, mbv3 or mcu."),
    device: str = typer.Option(..., "--device", "-d", help="Device whose predictor prices candidates (and, with "
                               "--validate, that measures them)."),
    predictor: Optional[str] = typer.Option(None, "--predictor", help="Predictor bundle id or directory (default: "
                                            "the device's newest; `hwfarm predictor train --device NAME` makes one), "
                                            "or 'sim': a simulated device's own analytical model."),
    accuracy: str = typer.Option("table", "--accuracy", help="Accuracy estimator: table (NB201's trained "
                                 "accuracies), proxy (zero-cost, --proxy), train (short training on --data), or "
                                 "predictor (fitted on --accuracy-fit architectures scored by the table or proxy)."),
    proxy: str = typer.Option("vote", "--proxy", help="Zero-cost proxy for --accuracy proxy: synflow, jacob_cov, "
                              "naswot, grad_norm, snip, vote."),
    data: str = typer.Option("mnist_5k", "--data", help="Dataset of proxies and training: mnist_5k or digits."),
    accuracy_fit: int = typer.Option(300, "--accuracy-fit", min=10, help="Architectures the accuracy predictor is "
                                     "fitted on."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="Predicted latency limit (ms)."),
    max_energy_mj: Optional[float] = typer.Option(None, "--max-energy-mj", help="Predicted energy limit (mJ)."),
    max_sram_kb: Optional[float] = typer.Option(None, "--max-sram-kb", help="Peak activation memory limit (KB); "
                                                "on an MCU device: its SRAM (the default), less its runtime's share."),
    max_flash_kb: Optional[float] = typer.Option(None, "--max-flash-kb", help="Weight memory limit (KB); on an MCU "
                                                 "device: its flash (the default), less its runtime's share."),
    max_fallback_ops: Optional[int] = typer.Option(None, "--max-fallback-ops", min=0, help="Operators an "
                                                   "accelerator (Edge TPU, NPU) may leave to its host CPU, placed "
                                                   "as its simulator profile places them."),
    trials: int = typer.Option(500, "--trials", min=0, help="Candidates to score (Optuna trials)."),
    strategy: str = typer.Option("evolution", "--strategy", help="random, tpe, nsga2, evolution, shrink "
                                 "(progressive space shrinking) or two-stage (probe, drop dominated options, evolve)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the strategy."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (sqlite:///study.db) to "
                                          "resume or share the study (default: in memory)."),
    validate: int = typer.Option(0, "--validate", min=0, help="Measure the top K Pareto candidates on the device "
                                 "through the farm and report predicted vs measured."),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="Search/measure rounds: each round measures K new "
                                         "candidates (--validate K, default 5), refits the cost model on the "
                                         "measurements and searches again; the best is judged on measured latency."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: "
                                       "nas-runs/<space>-<device>-<strategy>-<time>)."),
    as_json: bool = typer.Option(False, "--json", help="The result as one JSON object, the last line of stdout."),
) -> None:
    """Hardware-aware architecture search with the device's predictor as cost function."""
    import dataclasses
    import json
    import sys
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from farm.errors import InputError
    from nas.accuracy import make_accuracy
    from nas.objectives import Constraints, PredictorLatencyModel
    from nas.report import print_search, write_run
    from nas.search import SearchConfig, search
    from nas.search import validate as validate_result
    from nas.strategies import STRATEGIES

    spaces = _search_spaces()
    if space not in spaces:
        raise InputError(f"--space {space!r}: expected one of {', '.join(spaces)}")
    if strategy not in STRATEGIES:
        raise InputError(f"--strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if accuracy not in _ACCURACY:
        raise InputError(f"--accuracy {accuracy!r}: expected one of {', '.join(_ACCURACY)}")
    if rounds is not None and rounds < 1:
        raise InputError(f"--rounds {rounds}: must be at least 1")
    if storage is not None and "://" not in storage:
        raise InputError(f"--storage {storage!r}: expected an Optuna storage URL such as sqlite:///study.db")
    for flag, v in (("--max-latency-ms", max_latency_ms), ("--max-energy-mj", max_energy_mj),
                    ("--max-sram-kb", max_sram_kb), ("--max-flash-kb", max_flash_kb)):
        if v is not None and not v > 0:
            raise InputError(f"{flag} {v}: must be above 0")
    acc = make_accuracy(accuracy, space, data=data, proxy=proxy, fit=accuracy_fit, seed=seed)
    # The global --registry/--db of the running `hwfarm`, read from the root command (this
    # layer does not import farm.cli).
    root = ctx.find_root().params
    registry, db = Path(root.get("registry") or "devices.yaml"), Path(root.get("db") or "hwfarm.db")
    from farm.devices.caps import DeviceCaps, device_caps
    from farm.errors import RegistryError
    from farm.registry.spec import load_registry
    from nas.accelerator import FallbackModel, SimLatencyModel, mcu_limits

    caps: DeviceCaps | None = None
    try:
        caps = device_caps(load_registry(registry).get(device))
    except RegistryError:
        if validate or rounds or predictor == "sim" or max_fallback_ops is not None:
            raise  # a device --validate cannot measure fails now; so does one these options need
    fallback = None  # every candidate's predicted fallback (its graph built: only when limited)
    if max_fallback_ops is not None:
        fallback = FallbackModel.for_device(device, registry=registry)
    if caps is not None and caps.sram_kb is not None:  # an MCU: its memory is a hard limit
        max_sram_kb, max_flash_kb = mcu_limits(device, registry=registry, max_sram_kb=max_sram_kb,
                                               max_flash_kb=max_flash_kb)

    from predictors.api import load

    cost: Any
    energy_model: Any
    if predictor == "sim":
        cost = energy_model = SimLatencyModel.for_device(device, registry=registry)
        bundle_id = f"sim:{cost.name} (analytical, noise-free)"
    else:
        p = load(predictor or device, db=db)
        if p.device != device:
            raise InputError(f"bundle {p.bundle_id!r} was trained for device {p.device!r}, not {device!r}")
        cost = PredictorLatencyModel(p, energy=max_energy_mj is not None)  # else energy only for what is reported
        energy_model, bundle_id = PredictorLatencyModel(p), p.bundle_id
    constraints = Constraints(max_latency_ms, max_energy_mj, max_sram_kb, max_flash_kb, max_fallback_ops)
    cfg = SearchConfig(strategy=strategy, trials=trials, seed=seed, constraints=constraints, storage=storage)
    run_dir = out or Path("nas-runs") / f"{space}-{device}-{strategy}-{time.strftime('%Y%m%d-%H%M%S')}"

    wide = None if sys.stdout.isatty() else 160  # piped output: wide, as the other commands print
    err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
    with Progress(TextColumn(f"{space} {strategy}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("trials", total=trials)
        if rounds:
            from nas.rounds import search_rounds

            def next_round(rec):
                err_ = f"{rec.mean_abs_error:.1%}" if rec.mean_abs_error is not None else "n/a"
                bar.console.print(f"round {rec.round}: measured {len(rec.validated)}, mean |error| {err_}, "
                                  f"next scale x{rec.scale:.3f}")
                bar.reset(task, total=trials)

            res = search_rounds(space, latency=cost, accuracy=acc, config=cfg, rounds=rounds, k=validate or 5,
                                device=device, workdir=run_dir / "validate", registry=registry, db=db,
                                energy=energy_model, fallback=fallback, on_round=next_round,
                                on_trial=lambda done, _total: bar.update(task, completed=done))
        else:
            res = search(space, latency=cost, accuracy=acc, config=cfg, device=device, energy=energy_model,
                         fallback=fallback, on_trial=lambda done, _total: bar.update(task, completed=done))
    fast = isinstance(cost, PredictorLatencyModel) and cost.fast_path(space)
    res = dataclasses.replace(res, extra={**res.extra, "bundle": bundle_id, "fast_path": fast,
                                          "out": str(run_dir), "accuracy_estimator": accuracy,
                                          **_accuracy_extra(acc)})
    if res.best is None:
        raise InputError(res.infeasible_message())
    if validate and not rounds:
        with err.status(f"measuring {validate} candidate(s) on {device}…"):
            res = validate_result(res, validate, device=device, workdir=run_dir / "validate", registry=registry,
                                  db=db)
    write_run(res, run_dir)
    print_search(err if as_json else Console(highlight=False, width=wide), res, bundle=bundle_id, run_dir=run_dir)
    if as_json:
        sys.stdout.write(json.dumps(res.to_json()) + "\n")
        sys.stdout.flush()


def _accuracy_extra(acc: object) -> dict[str, object]:
    """What the JSON says of a learned accuracy predictor (its cross-validated ρ)."""
    rep = getattr(acc, "report", None)
    return {} if rep is None else {"accuracy_predictor": dataclasses_asdict(rep)}


def dataclasses_asdict(x: object) -> dict[str, object]:
    import dataclasses

    return dataclasses.asdict(x)  # type: ignore[call-overload, no-any-return]


@app.command()
def bench(
    space: str = typer.Option(..., "--space", help="How to read the tables' architecture column: nb201 (arch_str)."),
    latency_csv: Path = typer.Option(..., "--latency-csv", help="Latency table: one column per device (ms)."),
    accuracy_csv: Path = typer.Option(..., "--accuracy-csv", help="Accuracy table (%), joined on the architecture."),
    target: str = typer.Option(..., "--target", help="The device column to search for (any column of the table)."),
    accuracy_column: str = typer.Option("cifar10-test", "--accuracy-column", help="Accuracy column to maximize."),
    strategy: str = typer.Option("cei", "--strategy", help="cei (default), greedy, tpe (Optuna) or random."),
    budget_percentile: float = typer.Option(30.0, "--budget-percentile", help="Latency budget: this percentile of "
                                            "the target's true latencies."),
    measurements: int = typer.Option(50, "--measurements", help="Target latencies the search may read."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds 0..N-1; the figures are their mean."),
    as_json: bool = typer.Option(False, "--json", help='Last stdout line: {"regret", "feasible_rate", '
                                 '"random_regret", "random_feasible_rate", ...}.'),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw regret per seed against random search to "
                                        "this .png (the numbers go beside it as .json)."),
) -> None:
    """Tabular hardware-aware NAS benchmark: find the most accurate architecture within a
    latency budget, reading only MEASUREMENTS target latencies (plus every other column);
    compared with random search on as many measurements."""
    import json
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from farm.errors import InputError
    from nas.bench import MEASURE_STRATEGIES, bench_figure, read_accuracy, tabular_bench
    from predictors.benchmark import column_error, read_table

    if strategy not in MEASURE_STRATEGIES:
        raise InputError(f"--strategy {strategy!r}: choose one of {', '.join(MEASURE_STRATEGIES)}")
    if not 0 < budget_percentile <= 100:
        raise InputError(f"--budget-percentile {budget_percentile}: must be within (0, 100]")
    if seeds < 1:
        raise InputError(f"--seeds {seeds}: must be >= 1")
    if plot is not None and plot.suffix.lower() != ".png":
        raise InputError(f"--plot {plot}: expected a .png file name")
    table = read_table(latency_csv, space)
    if target not in table.devices:
        raise column_error(table, target, "target")  # names the device columns
    accuracy = read_accuracy(accuracy_csv, accuracy_column, table)
    err = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(f"{strategy} on {target}", total=seeds)
        result = tabular_bench(table, accuracy, target, accuracy_column=accuracy_column, strategy=strategy,
                               budget_percentile=budget_percentile, measurements=measurements, seeds=seeds,
                               on_seed=lambda _: bar.advance(task))
    doc = result.to_json()
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        bench_figure(result).savefig(plot, dpi=120)
        plot.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
        err.print(f"plot: {plot}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    out = Console(width=max(100, Console().width))
    t = Table(title=f"{target}: budget {result.budget_ms:.4g} ms (p{budget_percentile:g})",
              caption=f"best {accuracy_column} within it: {result.best_accuracy:.2f}")
    for col in ("seed", "search", "accuracy", "latency ms", "feasible", "regret", "measured"):
        t.add_column(col, justify="right")
    for s in result.seeds:
        for name, p in ((strategy, s.search), ("random", s.random)):
            t.add_row(str(s.seed), name, f"{p.accuracy:.2f}", f"{p.latency_ms:.4g}", "yes" if p.feasible else "NO",
                      f"{p.regret:.2f}", str(p.measurements))
    t.add_section()
    t.add_row("mean", strategy, f"{doc['accuracy']:.2f}", f"{doc['latency_ms']:.4g}",
              f"{100 * result.feasible_rate:.0f}%", f"{result.regret:.2f}", "")
    t.add_row("mean", "random", f"{doc['random_accuracy']:.2f}", f"{doc['random_latency_ms']:.4g}",
              f"{100 * result.random_feasible_rate:.0f}%", f"{result.random_regret:.2f}", "")
    out.print(t)
    out.print(f"{measurements} target measurements per search, {len(result.sources)} source columns; "
              f"{result.seconds:.1f} s", highlight=False)
