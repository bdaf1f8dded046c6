"""Structured pruning: channels physically removed across dependent layers, the importance
criteria, the latency-driven allocations (progressive, search) against uniform, pruned modules
in model directories, and `hwfarm compress prune`'s refusals."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from farm.errors import InputError
from nas.data import Dataset, load_dataset

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
nn = torch.nn

from compress import prune as P  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHAPE = (1, 1, 8, 8)  # digits at their own size: every test trains in seconds


class Block(nn.Module):
    """An inverted residual: 1×1 expand, 3×3 depthwise, 1×1 project, + input when shapes keep."""

    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        h = cin * t
        self.conv = nn.Sequential(nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                  nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                  nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.res else y


def tiny_mbv2() -> nn.Module:
    """Stem, three inverted residuals (two share a residual add), a 1×1 conv, pool, classifier."""
    return nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
                         Block(16, 16, 2, 2), Block(16, 16, 1, 2), Block(16, 24, 1, 2),
                         nn.Conv2d(24, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


class MacLatency:
    """A stand-in device: 0.01 ms + 1 ms per MMAC, from the module's shapes (no ONNX)."""

    def __init__(self):
        self.calls = 0

    def latency_ms(self, module, *, onnx=None):
        self.calls += 1
        macs = 0

        def hook(m, _i, o):
            nonlocal macs
            if isinstance(m, nn.Conv2d):
                macs += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            elif isinstance(m, nn.Linear):
                macs += m.in_features * m.out_features

        hooks = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
        with torch.no_grad():
            module.eval()(torch.zeros(*SHAPE))
        for h in hooks:
            h.remove()
        return 0.01 + macs / 1e6


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: a second thread only waits on the first
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    return load_dataset("digits", "train"), load_dataset("digits", "test").take(150)


@pytest.fixture(scope="module")
def trained(digits) -> nn.Module:
    from nas.train import TrainConfig, fit

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = tiny_mbv2()
    fit(net, digits[0], TrainConfig(epochs=1, lr=0.1))
    torch.set_num_threads(n)
    return net.eval()


def _params(m) -> int:
    return sum(p.numel() for p in m.parameters())


FAST = P.PruneConfig(epochs=0, final_steps=4, step_steps=3, val_images=64, trials=4, trial_steps=2)


# ---------------------------------------------------------------------------- channels really go


def test_groups_follow_residual_adds_and_depthwise_convs(trained):
    groups = {g.name: g for g in P.channel_groups(trained, torch.zeros(*SHAPE))}
    by_layer = {layer: g for g in groups.values() for layer in g.layers}
    # the two blocks joined by the residual add share their output channels (and the first block's)
    assert by_layer["3.conv.6"] is by_layer["4.conv.6"]
    # an expand conv goes with its depthwise conv (their hidden channels)
    assert by_layer["4.conv.0"] is by_layer["4.conv.3"] and by_layer["4.conv.0"].depthwise
    assert not by_layer["6"].depthwise and by_layer["6"].size == 4 and by_layer["0"].size == 8
    assert "11" not in by_layer  # the classifier's outputs are the classes: never pruned


def test_uniform_pruning_removes_channels_and_keeps_the_network_consistent(trained):
    x = torch.from_numpy(load_dataset("digits", "test").x[:4])
    m = P.prune_uniform(copy.deepcopy(trained), 0.5, torch.zeros(*SHAPE), alignment=4)
    assert _params(m) < 0.45 * _params(trained)
    assert m(x).shape == trained(x).shape == (4, 10)
    b3, b4 = m[3].conv, m[4].conv
    assert b3[6].out_channels == b4[6].out_channels == b4[0].in_channels == 8  # the residual chain stays one width
    assert b4[3].groups == b4[3].in_channels == b4[3].out_channels == b4[0].out_channels == 16  # depthwise = hidden
    assert m[11].out_features == 10 and m[11].in_features == m[6].out_channels == 16
    assert all(g.channels % 4 == 0 for g in P.channel_groups(m, torch.zeros(*SHAPE)))


@pytest.mark.parametrize("criterion", sorted(P.CRITERIA))
def test_every_criterion_prunes_to_the_counts_asked(trained, digits, criterion):
    m = copy.deepcopy(trained)
    P.prune_channels(m, torch.zeros(*SHAPE), {"6": 12, "4.conv.0": 20}, criterion=criterion, data=digits[0])
    assert m[6].out_channels == 12 and m[11].in_features == 12
    assert m[4].conv[0].out_channels == m[4].conv[3].out_channels == 20
    assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_the_least_important_channels_go():
    def net(conv: list[float], bn: list[float]) -> nn.Module:
        m = nn.Sequential(nn.Conv2d(1, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 64, 3))
        with torch.no_grad():
            m[0].weight[:] = torch.tensor(conv).view(4, 1, 1, 1)
            m[1].weight[:] = torch.tensor(bn)
            m[4].weight.fill_(0.01)
        return m

    kept = P.prune_channels(net([1.0, 4.0, 2.0, 3.0], [1.0] * 4), torch.zeros(1, 1, 8, 8), {"0": 2}, criterion="l1")
    assert kept[0].weight.flatten().tolist() == [4.0, 3.0] and kept[4].in_features == 2 * 64
    kept = P.prune_channels(net([1.0] * 4, [4.0, 1.0, 3.0, 2.0]), torch.zeros(1, 1, 8, 8), {"0": 2},
                            criterion="bn_scale")
    assert kept[1].weight.tolist() == [4.0, 3.0]
    with pytest.raises(InputError, match="taylor needs training images"):
        P.prune_channels(net([1.0] * 4, [1.0] * 4), torch.zeros(1, 1, 8, 8), {"0": 2}, criterion="taylor")
    with pytest.raises(InputError, match="unknown importance criterion 'l3'"):
        P.prune_channels(net([1.0] * 4, [1.0] * 4), torch.zeros(1, 1, 8, 8), {"0": 2}, criterion="l3")
    with pytest.raises(InputError, match="cannot keep 9 of its 4"):
        P.prune_channels(net([1.0] * 4, [1.0] * 4), torch.zeros(1, 1, 8, 8), {"0": 9})


def test_per_group_ratios_differ_where_uniform_is_one_share(trained):
    ex = torch.zeros(*SHAPE)
    m = P.prune_ratios(copy.deepcopy(trained), {"6": 0.75, "4.conv.0": 0.1}, ex, alignment=8)
    assert m[6].out_channels == 8  # 32 * 0.25
    assert m[4].conv[0].out_channels == 24  # 32 * 0.9 = 28.8, snapped down to 24
    assert m[3].conv[0].out_channels == 32  # not named: untouched
    groups = P.channel_groups(trained, ex)
    keep = P.uniform_keep(groups, 0.5, alignment=8)
    assert {g.name: keep[g.name] for g in groups} == {g.name: max(8, g.channels // 2 // 8 * 8) for g in groups}
    assert set(P.uniform_keep(groups, 0.99, alignment=8).values()) == {8}  # never below one block
    with pytest.raises(InputError, match="no prunable channel group has layer '11'"):
        P.prune_ratios(copy.deepcopy(trained), {"11": 0.5}, ex)


# ---------------------------------------------------------------------------- the latency cost


class FakePredictor:
    """A predictor bundle's interface: ONNX bytes in, 1 ms per MMAC (the farm's importer counts)."""

    def __init__(self):
        self.calls = 0

    def predict(self, data):
        from farm.formats.onnx import graph_from_onnx, parse_onnx

        self.calls += 1
        g = graph_from_onnx(parse_onnx(data))

        class Pred:
            latency_ms = g.macs / 1e6

        return Pred()


def test_predictor_latency_exports_and_memoizes_by_channel_configuration(trained):
    pred = FakePredictor()
    lat = P.PredictorLatency(pred, SHAPE)
    full = lat.latency_ms(trained)
    assert lat.latency_ms(copy.deepcopy(trained)) == full and pred.calls == 1  # same channels: asked once
    small = P.prune_uniform(copy.deepcopy(trained), 0.5, torch.zeros(*SHAPE), alignment=4)
    assert 0 < lat.latency_ms(small) < 0.5 * full and pred.calls == 2
    assert abs(full - MacLatency().latency_ms(trained) + 0.01) / full < 0.05  # the importer counts what torch runs


def test_farm_latency_measures_each_channel_configuration_once(trained, farm_dir):
    dev = P.FarmLatency("sim-raspi4", SHAPE, registry=farm_dir / "devices.yaml", db=farm_dir / "farm.db")
    full = dev.latency_ms(trained)
    assert full > 0 and dev.latency_ms(copy.deepcopy(trained)) == full and dev.n_measured == 1
    small = P.prune_uniform(copy.deepcopy(trained), 0.5, torch.zeros(*SHAPE), alignment=4)
    assert dev.latency_ms(small) < full and dev.n_measured == 2
    assert (farm_dir / "farm.db").is_file()  # the measurements are the farm's, stored like any profile


class StepPredictor:
    """Latency steps at every 16 output channels (a device that pads to its vector width)."""

    def __init__(self, step: int | None):
        self.step = step

    def predict_many(self, graphs):
        out = []
        for g in graphs:
            c = g.nodes[-1].outputs[0].shape[1]
            ms = (-(-c // self.step) * self.step if self.step else c) * 0.01

            class Pred:
                latency_ms = ms

            out.append(Pred())
        return out


def test_alignment_is_read_from_the_predictors_steps():
    assert P.detect_alignment(StepPredictor(16)) == (16, "steps")
    assert P.detect_alignment(StepPredictor(4)) == (4, "steps")
    assert P.detect_alignment(StepPredictor(None)) == (8, "default")  # smooth: nothing to snap to
    smooth = StepPredictor(None)
    smooth.latency = type("L", (), {"rules": type("R", (), {"layout_block": 16})()})()
    assert P.detect_alignment(smooth) == (16, "layout")  # the runtime's blocked layout the bundle models


# ---------------------------------------------------------------------------- the allocations


def test_progressive_reaches_the_predicted_target(trained, digits):
    lat = MacLatency()
    ms0 = lat.latency_ms(trained)
    res = P.progressive(trained, input_shape=SHAPE, train=digits[0], test=digits[1], latency=lat,
                        target_ms=0.6 * ms0, config=FAST, alignment=4)
    assert res.predicted_ms_before == pytest.approx(ms0)
    assert res.predicted_ms_after <= 0.6 * ms0 == pytest.approx(res.target_ms)
    assert res.predicted_ms_after == pytest.approx(lat.latency_ms(res.module))
    ms = [s.predicted_ms for s in res.steps]
    assert res.steps[0].label == "original" and res.steps[-1].label == "pruned" and len(ms) >= 3
    assert all(b < a for a, b in zip(ms[:-2], ms[1:-1], strict=True))  # every step cuts latency
    assert all(s.accuracy is not None and 0 <= s.accuracy <= 100 for s in res.steps)
    assert all(s.pruned for s in res.steps[1:-1])
    assert all(k <= res.channels_before[g] and (k % 4 == 0 or k == res.channels_before[g])
               for g, k in res.channels_after.items())
    assert _params(res.module) < _params(trained) and res.module(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert _params(trained) == _params(tiny_mbv2())  # the original is left as it was
    assert res.train_steps == 3 * (len(ms) - 2) + 4
    doc = json.loads(json.dumps(res.to_json()))
    assert doc["method"] == "progressive" and len(doc["steps"]) == len(ms)


class Halved(MacLatency):
    """The "device" the stand-in predictor overestimates twofold."""

    def latency_ms(self, module, *, onnx=None):
        return 0.5 * super().latency_ms(module)


@pytest.mark.parametrize("method", ["progressive", "uniform"])
def test_with_a_measure_the_target_is_a_measured_latency(trained, digits, method):
    dev = Halved()
    ms0 = dev.latency_ms(trained)
    res = P.METHODS[method](trained, input_shape=SHAPE, train=digits[0], test=digits[1], latency=MacLatency(),
                            target_ms=0.6 * ms0, config=FAST, alignment=4, measure=dev)
    assert res.measured_ms_before == pytest.approx(ms0)
    assert res.measured_ms_after <= 0.6 * ms0 < res.predicted_ms_after  # stopped on the measurement
    assert all(s.measured_ms == pytest.approx(dev.latency_ms(trained) if s.step == 0 else s.predicted_ms / 2)
               for s in res.steps)


@pytest.mark.parametrize("method", ["uniform", "search"])
def test_uniform_and_search_meet_the_target_too(trained, digits, method):
    lat = MacLatency()
    target = 0.6 * lat.latency_ms(trained)
    res = P.METHODS[method](trained, input_shape=SHAPE, train=digits[0], test=digits[1], latency=lat,
                            target_ms=target, config=FAST, alignment=4)
    assert res.predicted_ms_after <= target and res.method == method
    assert lat.latency_ms(res.module) == pytest.approx(res.predicted_ms_after)
    if method == "uniform":  # one share everywhere
        assert 0 < res.extra["ratio"] < 1
    else:
        assert res.trials == 4 and 1 <= res.extra["feasible_trials"] <= 4


def test_a_target_below_the_floor_is_refused_at_once(trained, digits):
    lat = MacLatency()
    with pytest.raises(InputError, match=r"cannot be reached: every layer group pruned to 4 channel\(s\)"):
        P.progressive(trained, input_shape=SHAPE, train=digits[0], test=digits[1], latency=lat,
                      target_ms=0.001, config=FAST, alignment=4)
    assert lat.calls <= 3


# ---------------------------------------------------------------------------- model directories


def test_pruned_reference_net_saves_and_loads_as_a_model_directory(tmp_path):
    from nas.modeldir import load_model_dir, save_model_dir
    from nas.modules import build_module

    spec = "mobilenet_v2:width=0.25"
    net = build_module(spec, input_size=8).eval()
    m = P.prune_uniform(net, 0.5, torch.zeros(*SHAPE), alignment=4)
    x = torch.randn(2, *SHAPE[1:])
    d = save_model_dir(tmp_path / "pruned", arch_spec=spec, module=m, dataset="digits", input_size=8, in_channels=1,
                       num_classes=10, accuracy=None)
    back = load_model_dir(d)
    assert back.meta["shapes"] and _params(back.module) == _params(m)
    assert torch.allclose(back.module(x), m(x), atol=1e-5)


# ---------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A small DS-CNN trained on digits, as `hwfarm train` writes it."""
    from nas.modeldir import save_model_dir
    from nas.modules import build_module
    from nas.train import TrainConfig, evaluate, fit

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = "ds_cnn:filters=32,blocks=2,stride=1"
    net = build_module(spec, input_size=8)
    fit(net, load_dataset("digits", "train"), TrainConfig(epochs=3, lr=0.1))
    torch.set_num_threads(n)
    return save_model_dir(tmp_path_factory.mktemp("m") / "dscnn", arch_spec=spec, module=net, dataset="digits",
                          input_size=8, in_channels=1, num_classes=10,
                          accuracy=evaluate(net, load_dataset("digits", "test")))


@pytest.fixture
def farm_dir(tmp_path) -> Path:
    """A registry, and a dataset folder holding the sim-raspi4 predictor of the 0.1 fixture."""
    fx = REPO / "tests" / "fixtures" / "v0.1"
    (tmp_path / "devices.yaml").write_text("devices:\n  - name: sim-raspi4\n    url: sim://raspi4?seed=0\n"
                                           "  - name: sim-pixel3\n    url: sim://pixel3?seed=0\n")
    shutil.copytree(fx / "hwfarm-predictors", tmp_path / "hwfarm-predictors")
    return tmp_path


def _cli(farm_dir: Path, *args: str):
    """`hwfarm --registry … --db … compress prune …`, with prune mounted where compress.cli has none yet."""
    import subprocess

    code = ("import sys; from compress import cli; from compress.prune_cli import prune\n"
            "if not any((c.name or c.callback.__name__) == 'prune' for c in cli.app.registered_commands):\n"
            "    cli.app.command('prune')(prune)\n"
            "from farm.cli import main; main(sys.argv[1:])")
    return subprocess.run([sys.executable, "-c", code, "--registry", str(farm_dir / "devices.yaml"), "--db",
                           str(farm_dir / "hwfarm.db"), "compress", "prune", *args],
                          capture_output=True, text=True, timeout=300, cwd=farm_dir)


@pytest.mark.parametrize("args, says", [
    (["--target-speedup", "2"], "pruning needs a model directory with torch weights"),  # MODEL: an .onnx file
    (["--device", "sim-raspi4"], "give one target"),
    (["--target-speedup", "2", "--method", "amc"], "--method 'amc': expected one of progressive, search, uniform"),
    (["--target-speedup", "2", "--device", "pixel9"], "pixel9"),
])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(model_dir, farm_dir, args, says):
    target = model_dir / "model.onnx" if "model directory" in says else model_dir
    if "--device" not in args:
        args = [*args, "--device", "sim-raspi4"]
    r = _cli(farm_dir, str(target), *args, "--out", str(farm_dir / "run"))
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (farm_dir / "run").exists() and not list(farm_dir.glob(".run*"))


@pytest.mark.parametrize("kwargs, says", [
    (dict(target_speedup=2.0, target_latency_ms=1.0), "give one target"),
    (dict(target_speedup=0.5), "--target-speedup 0.5: must be above 1"),
    (dict(target_speedup=2.0, data="cifar"), "--data 'cifar': unknown dataset"),
    (dict(target_speedup=2.0, device="sim-pixel3"), "no predictor trained for device 'sim-pixel3'"),
    (dict(target_speedup=1000.0), "cannot be reached: every layer group pruned to"),
])
def test_bad_input_raises_one_line_and_writes_nothing(model_dir, farm_dir, kwargs, says):
    kwargs = {"device": "sim-raspi4", **kwargs}
    with pytest.raises(InputError) as err:
        P.run_prune(model_dir, out=farm_dir / "run", registry=farm_dir / "devices.yaml", db=farm_dir / "hwfarm.db",
                    **kwargs)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert not (farm_dir / "run").exists() and not list(farm_dir.glob(".run*"))


@pytest.mark.slow
def test_cli_prunes_a_model_directory_and_reports_the_measured_speedup(model_dir, farm_dir):
    from nas.modeldir import is_model_dir, load_model_dir

    r = _cli(farm_dir, str(model_dir), "--device", "sim-raspi4", "--target-speedup", "1.5", "--epochs", "1",
             "--out", str(farm_dir / "run"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("model", "accuracy_before", "accuracy_after", "latency_ms_before", "latency_ms_after", "measured",
                "speedup", "size_kb_before", "size_kb_after"):
        assert key in doc
    assert doc["measured"] is True and doc["simulated"] is True and doc["speedup"] > 1.4
    target, loop = doc["details"]["target"], doc["details"]["prune"]
    assert target["judged_by"] == "measured" and target["ms"] == pytest.approx(target["measured_original_ms"] / 1.5)
    assert loop["measured_ms_after"] <= target["ms"] and target["met"] is True  # the loop stopped on measurements
    assert [p["measured"] for p in doc["points"]] == [True] * len(doc["points"])
    assert doc["accuracy_after"] > 50 and doc["size_kb_after"] < doc["size_kb_before"]
    run = farm_dir / "run"
    assert is_model_dir(run) and Path(doc["model"]) == run / "model.onnx"
    for f in ("report.json", "accuracy_latency.png", "accuracy_latency.csv", "weights.safetensors"):
        assert (run / f).is_file()
    back = load_model_dir(run)
    assert back.meta["extra"]["prune"]["method"] == "progressive"
    assert back.module(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    assert np.isclose(back.accuracy, doc["accuracy_after"], atol=0.01)
