"""What a device tells the rest of hwfarm about itself: :class:`DeviceCaps`.

Predictors, dataset builders and searches read these fields, never a device's URL scheme:
a plugin device kind gets the same treatment as a built-in one by answering ``caps``.

:func:`device_caps` answers from the registry entry alone (nothing is contacted), so it is
cheap to call wherever a :class:`~farm.registry.spec.DeviceSpec` is at hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from farm.registry.spec import DeviceSpec

__all__ = ["DeviceCaps", "device_caps"]


@dataclass(frozen=True)
class DeviceCaps:
    """A device's capabilities, as far as they are known without measuring.

    - ``simulated``: a calibrated model answers, not hardware; its noise is seeded, so
      repeating a measurement adds nothing.
    - ``runtime``: the inference runtime (``onnxruntime``, ``litert``, ``benchmark_model``,
      ``sim``, a firmware name); ``runtime_version`` where known without contacting it.
    - ``dtypes``: the dtypes it computes in, its native one first (int8-only chips: ``int8``).
    - ``fusion`` / ``fold_constants``: the kernel fusion rules and constant folding the device
      is known to apply (a simulated profile states them), else None: detect them by measuring.
    - ``accelerator``: the placement label of its accelerator (``edgetpu``, ``npu``, ``gpu``)
      or None; ``fallback``: what runs an op the accelerator lacks (``per_op``,
      ``rest_of_graph``), None without one; ``onchip_sram_kb``: parameters beyond this
      stream over the host link on every inference.
    - ``sram_kb`` / ``flash_kb``: hard memory limits (MCUs), None where there is none;
      ``runtime_sram_kb`` / ``runtime_flash_kb``: what the runtime itself takes of them.
    - ``bit_serial``: compute time scales with each layer's weight/activation bit widths.
    - ``profile``: the simulated device's profile name, None for real devices.
    """

    simulated: bool
    runtime: str
    dtypes: tuple[str, ...] = ("float32", "int8")
    runtime_version: str | None = None
    fusion: tuple[tuple[str, ...], ...] | None = None
    fold_constants: bool | None = None
    accelerator: str | None = None
    fallback: str | None = None
    onchip_sram_kb: float | None = None
    sram_kb: float | None = None
    flash_kb: float | None = None
    runtime_sram_kb: float = 0.0
    runtime_flash_kb: float = 0.0
    bit_serial: bool = False
    profile: str | None = None

    @property
    def int_only(self) -> bool:
        """Computes in integers first (int8-only accelerators, MCUs): models go in as int8."""
        return self.dtypes[0] in ("int8", "uint8", "int16")


def _sim_caps(spec: DeviceSpec) -> DeviceCaps:
    from farm import __version__
    from farm.sim.profile import load_profile

    p = load_profile(spec.parsed_url.host)
    acc = p.accelerator
    return DeviceCaps(
        simulated=True, runtime="sim", runtime_version=f"hwfarm-sim {__version__}", dtypes=p.dtypes,
        fusion=tuple(tuple(x) for x in p.fusion), fold_constants=p.fold_constants,
        accelerator=acc.name if acc is not None else None, fallback=acc.fallback if acc is not None else None,
        onchip_sram_kb=p.onchip.sram_kb if p.onchip is not None else None,
        sram_kb=p.mcu.sram_kb if p.mcu is not None else None, flash_kb=p.mcu.flash_kb if p.mcu is not None else None,
        runtime_sram_kb=p.mcu.runtime_sram_kb if p.mcu is not None else 0.0,
        runtime_flash_kb=p.mcu.runtime_flash_kb if p.mcu is not None else 0.0,
        bit_serial=p.bitserial is not None, profile=p.name,
    )


def device_caps(spec: DeviceSpec) -> DeviceCaps:
    """The capabilities of a registered device, from its registry entry (and, for a simulated
    device, its profile). A plugin kind that defines ``caps`` on its device class is asked."""
    from farm.registry.plugins import device_plugins

    kind = spec.kind
    if kind == "sim":
        return _sim_caps(spec)
    plugin = device_plugins().get(kind)
    if plugin is not None:
        caps = getattr(plugin.load(), "caps_of", None)
        if callable(caps):
            result: DeviceCaps = caps(spec)
            return result
    runtime = spec.default_runtime or "onnxruntime"
    delegate = spec.delegate or ""
    if delegate == "gpu":
        return DeviceCaps(simulated=False, runtime=runtime, dtypes=("float32", "float16"), accelerator="gpu",
                          fallback="per_op")
    if "edgetpu" in delegate:
        return DeviceCaps(simulated=False, runtime=runtime, dtypes=("int8",), accelerator="edgetpu",
                          fallback="rest_of_graph", onchip_sram_kb=8192.0)
    if delegate and delegate != "xnnpack":
        return DeviceCaps(simulated=False, runtime=runtime, accelerator=delegate, fallback="per_op")
    return DeviceCaps(simulated=False, runtime=runtime)
