"""DeviceCaps: what each kind of device says about itself, from its registry entry."""

from __future__ import annotations

import pytest

from farm.devices import open_device
from farm.devices.caps import device_caps
from farm.registry import load_registry
from farm.registry.spec import DeviceSpec

REGISTRY = load_registry("devices.yaml")


def test_host_cpu_is_real_onnxruntime() -> None:
    caps = device_caps(REGISTRY.get("host-cpu"))
    assert not caps.simulated and caps.runtime == "onnxruntime"
    assert caps.fusion is None and caps.accelerator is None and caps.sram_kb is None


@pytest.mark.parametrize("name", [s.name for s in REGISTRY.devices if s.kind == "sim"])
def test_simulated_devices_state_their_profile(name: str) -> None:
    from farm.sim.profile import load_profile

    spec = REGISTRY.get(name)
    caps = device_caps(spec)
    p = load_profile(spec.parsed_url.host)
    assert caps.simulated and caps.profile == p.name and caps.dtypes == p.dtypes
    assert caps.fusion == tuple(tuple(x) for x in p.fusion) and caps.fold_constants == p.fold_constants
    assert (caps.accelerator is None) == (p.accelerator is None)
    assert (caps.sram_kb is None) == (p.mcu is None)
    assert caps.bit_serial == (p.bitserial is not None)
    assert open_device(spec).caps == caps


def test_int8_only_accelerator_and_mcu() -> None:
    tpu = device_caps(REGISTRY.get("sim-edgetpu"))
    assert tpu.int_only and tpu.accelerator == "edgetpu" and tpu.fallback == "rest_of_graph"
    mcu = device_caps(REGISTRY.get("sim-cortex-m7"))
    assert mcu.sram_kb and mcu.flash_kb and mcu.sram_kb < mcu.flash_kb


def test_delegates_of_real_litert_devices() -> None:
    gpu = device_caps(DeviceSpec(name="p", url="adb://usb/X", runtime="benchmark_model", delegate="gpu"))
    assert gpu.accelerator == "gpu" and not gpu.simulated
    tpu = device_caps(DeviceSpec(name="c", url="ssh://pi@127.0.0.1", runtime="litert", delegate="libedgetpu.so.1"))
    assert tpu.accelerator == "edgetpu" and tpu.onchip_sram_kb == 8192.0
    cpu = device_caps(DeviceSpec(name="c", url="ssh://pi@127.0.0.1", runtime="litert", delegate="xnnpack"))
    assert cpu.accelerator is None
