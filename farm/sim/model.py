"""The analytical latency/energy model behind simulated devices.

1. **Kernels.** A device executes kernels, not ONNX nodes: consecutive nodes matching one of
   the profile's fusion patterns (e.g. Conv→BatchNormalization→Relu) run as one kernel when
   each intermediate tensor has a single consumer. Fusion rules differ per device.
2. **Cost per kernel** (class = conv3x3, conv1x1, dwconv, gemm, pool, eltwise, …, optionally
   per dtype as ``conv3x3@int8``)::

       t = macs_aligned / peak_c + bytes / bandwidth_c + overhead_c

   ``macs_aligned`` rounds input and output channels up to the vector width, which makes
   latency step at multiples of it, as real SIMD/tiled kernels do. The compute term scales
   with threads by Amdahl's law.
3. **Placement** (accelerator profiles): a kernel runs on the accelerator when its ops and
   dtype are supported, else on the profile's host CPU cost model; every tensor crossing
   between them costs a transfer. With ``fallback: rest_of_graph`` (Edge TPU) everything
   after the first unsupported kernel runs on the CPU. A model with no kernel the
   accelerator can take (a float model on an int8-only chip) does not compile.
4. **On-chip memory**: parameters beyond the accelerator's SRAM stream over the link
   (DRAM/USB) on every inference. **MCUs**: peak SRAM by tensor liveness and flash =
   weights + runtime; over either limit is an out-of-memory failure.
5. **Bit-serial** (BitFusion): compute time scales with ⌈w_bits/2⌉·⌈a_bits/2⌉. Bit widths
   live in the IR as node attrs ``w_bits`` / ``a_bits`` (see :func:`with_bit_widths`);
   without them a node's dtype width is used (int8 → 8).
6. **Energy** = static power × time + dynamic power × compute time + energy per byte moved
   (DRAM) + energy per byte over the host link.

Everything here is a pure function of (graph, profile, threads, clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from farm.errors import ModelError
from farm.ir.bits import bit_widths, dtype_bits
from farm.ir.graph import Graph
from farm.ir.kernels import Kernel, form_kernels
from farm.ir.memory import flash_kb, peak_sram_kb
from farm.sim.profile import KernelCost, SimProfile

__all__ = ["KernelTime", "SimResult", "CompileError", "OutOfMemoryError", "kernel_latency_ms", "simulate",
           "place_kernels"]


class CompileError(ModelError):
    """The device's compiler refuses the model (e.g. a float model on an int8-only chip).
    Not retried; the CLI exits 1 (a device refusal, not a broken file)."""

    exit_code = 1


class OutOfMemoryError(ModelError):
    """The model does not fit the device's SRAM or flash. Not retried; exit 1."""

    exit_code = 1

@dataclass(frozen=True)
class KernelTime:
    kernel: Kernel
    latency_ms: float  # everything below, transfers of its inputs included
    compute_ms: float
    placement: str = "cpu"
    memory_ms: float = 0.0
    overhead_ms: float = 0.0
    transfer_ms: float = 0.0  # moving inputs across host ↔ accelerator
    stream_ms: float = 0.0  # parameters streamed past the on-chip SRAM
    bytes: int = 0  # DRAM bytes (bit-width adjusted)
    link_bytes: int = 0  # bytes over the host link (transfers + streamed parameters)
    w_bits: int | None = None
    a_bits: int | None = None

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"name": self.kernel.name, "ops": list(self.kernel.ops), "class": self.kernel.kernel_class,
                                "dtype": self.kernel.dtype, "latency_ms": self.latency_ms, "placement": self.placement}
        if self.transfer_ms:
            d["transfer_ms"] = self.transfer_ms
        if self.stream_ms:
            d["stream_ms"] = self.stream_ms
        if self.w_bits is not None:
            d["w_bits"], d["a_bits"] = self.w_bits, self.a_bits
        return d


@dataclass(frozen=True)
class SimResult:
    latency_ms: float
    kernels: tuple[KernelTime, ...]
    energy_mj: float | None
    invoke_ms: float = 0.0
    output_transfer_ms: float = 0.0  # results back to the host
    peak_sram_kb: float | None = None  # MCU profiles
    flash_kb: float | None = None
    accelerated: bool = False  # the profile has an accelerator with a host CPU for fallbacks

    def sums(self) -> dict[str, float]:
        """Latency split into the terms calibration scales: the profile's own kernels'
        compute, memory and overhead (with the invoke cost), the host link, and host-CPU time."""
        own = [k for k in self.kernels if k.placement != "cpu" or not self.accelerated]
        host = [k for k in self.kernels if k.placement == "cpu" and self.accelerated]
        return {
            "compute": sum(k.compute_ms for k in own),
            "memory": sum(k.memory_ms for k in own),
            "overhead": sum(k.overhead_ms for k in own) + self.invoke_ms,
            "link": sum(k.transfer_ms + k.stream_ms for k in self.kernels) + self.output_transfer_ms,
            "host": sum(k.compute_ms + k.memory_ms + k.overhead_ms for k in host),
        }

    @property
    def fallback_ops(self) -> list[str]:
        """Names of the nodes that fell back to the host CPU (accelerator profiles)."""
        if not self.accelerated:
            return []
        return [n for k in self.kernels if k.placement == "cpu" for n in k.kernel.nodes]


def _cost(k: Kernel, kernels: dict[str, KernelCost]) -> KernelCost:
    return kernels.get(f"{k.kernel_class}@{k.dtype}") or kernels.get(k.kernel_class) or kernels["default"]


def kernel_latency_ms(k: Kernel, profile: SimProfile, threads: int = 1) -> tuple[float, float]:
    """(total, compute) milliseconds of one kernel on the profile's own compute units."""
    c = _cost(k, profile.kernels)
    compute = k.macs_aligned / (c.gmacs * 1e6) if c.gmacs > 0 else 0.0
    compute *= profile.dtype_scale.get(k.dtype, 1.0)
    t = max(1, min(threads, profile.threads_max))
    compute *= (1 - profile.parallel_fraction) + profile.parallel_fraction / t
    memory = k.bytes / (c.gbs * 1e6) if c.gbs > 0 else 0.0
    return compute + memory + c.overhead_us / 1e3, compute


def _kernel_dtype_ok(k: Kernel, dtypes: tuple[str, ...]) -> bool:
    return k.macs == 0 or k.dtype in dtypes


def place_kernels(kernels: list[Kernel], profile: SimProfile) -> list[str]:
    """Where each kernel runs: the accelerator's name, or ``cpu`` for fallbacks."""
    acc = profile.accelerator
    if acc is None:
        return [profile.placement_name] * len(kernels)
    out: list[str] = []
    fallen = False
    for k in kernels:
        ok = not fallen and all(acc.supports_op(op) for op in k.ops) and _kernel_dtype_ok(k, profile.dtypes)
        if not ok and acc.fallback == "rest_of_graph":
            fallen = True
        out.append(acc.name if ok else "cpu")
    return out


def _check_compiles(graph: Graph, kernels: list[Kernel], placement: list[str], profile: SimProfile) -> None:
    dtypes = ", ".join(profile.dtypes)
    if profile.accelerator is None:
        for n in graph.nodes:
            if n.macs and n.dtype not in profile.dtypes:
                raise CompileError(f"{profile.name} cannot compile node {n.name!r} ({n.op}, {n.dtype}); "
                                   f"it runs {dtypes} only")
        return
    mac = [(k, p) for k, p in zip(kernels, placement, strict=True) if k.macs]
    if mac and not any(p != "cpu" for _, p in mac):
        k = mac[0][0]
        why = (f"it runs {dtypes} models only (first compute node {k.name!r} is {k.dtype})"
               if not _kernel_dtype_ok(k, profile.dtypes) else f"no compute op of the model is supported (first: {k.ops[0]})")
        integer_only = all(d in ("int8", "uint8", "int4", "uint4") for d in profile.dtypes)
        raise CompileError(f"{profile.name} cannot compile the model: {why}"
                           + ("; quantize it fully to int8 first" if integer_only and k.dtype not in profile.dtypes else ""))


def _check_fits(graph: Graph, profile: SimProfile, name: str) -> tuple[float | None, float | None]:
    m = profile.mcu
    if m is None:
        return None, None
    peak, where = peak_sram_kb(graph)
    sram = peak + m.runtime_sram_kb
    flash = flash_kb(graph) + m.runtime_flash_kb
    if sram > m.sram_kb:
        raise OutOfMemoryError(f"{name}: out of memory on {profile.name}: peak SRAM {sram:.1f} KB (activations "
                               f"{peak:.1f} KB at node {where!r} + runtime {m.runtime_sram_kb:g} KB) exceeds the "
                               f"{m.sram_kb:g} KB limit")
    if flash > m.flash_kb:
        raise OutOfMemoryError(f"{name}: out of memory on {profile.name}: flash {flash:.1f} KB (weights "
                               f"{flash - m.runtime_flash_kb:.1f} KB + runtime {m.runtime_flash_kb:g} KB) exceeds the "
                               f"{m.flash_kb:g} KB limit")
    return sram, flash


def simulate(graph: Graph, profile: SimProfile, *, threads: int = 1, clock: float = 1.0) -> SimResult:
    """Noise-free latency (ms), per-kernel breakdown and energy (mJ, None without a power model).

    ``clock`` (0, 1] is the fraction of the nominal clock (thermal throttling): compute
    time is divided by it. Raises :class:`CompileError` for what the device cannot compile
    and :class:`OutOfMemoryError` for what does not fit an MCU."""
    sram, flash = _check_fits(graph, profile, graph.name)
    kernels = form_kernels(graph, profile.fusion, profile.vector_width, fold_constants=profile.fold_constants)
    placement = place_kernels(kernels, profile)
    _check_compiles(graph, kernels, placement, profile)
    acc, bs = profile.accelerator, profile.bitserial
    nodes = {n.name: n for n in graph.nodes}
    on_host = {t.name for t in graph.inputs}  # tensors resident on the host side
    on_acc: set[str] = set()
    sram_left = profile.onchip.sram_kb * 1024 if profile.onchip else 0.0
    times = []
    for k, where in zip(kernels, placement, strict=True):
        head = nodes.get(k.nodes[0])
        own = acc is None or where != "cpu"  # on the profile's own compute units (not a host fallback)
        w_bits = a_bits = None
        scale = 1.0
        nbytes = k.bytes
        if bs is not None and own and head is not None and k.macs:
            w_bits, a_bits = bit_widths(head)
            if max(w_bits, a_bits) > bs.max_bits:
                raise CompileError(f"{profile.name} cannot run node {head.name!r} at w={w_bits}/a={a_bits} bits; "
                                   f"at most {bs.max_bits} bits")
            b = bs.brick_bits
            rw, ra = bs.reference_bits
            scale = (math.ceil(w_bits / b) * math.ceil(a_bits / b)) / (math.ceil(rw / b) * math.ceil(ra / b))
            base = dtype_bits(k.dtype)
            nbytes = int(k.weight_bytes * w_bits / base + (k.bytes - k.weight_bytes) * a_bits / base)
        if not own and profile.host is not None:
            c = _cost(k, profile.host.kernels)
            compute = k.macs_aligned / (c.gmacs * 1e6) if c.gmacs > 0 else 0.0
            memory = k.bytes / (c.gbs * 1e6) if c.gbs > 0 else 0.0
            overhead = c.overhead_us / 1e3
        else:
            c = _cost(k, profile.kernels)
            compute = k.macs_aligned * scale / (c.gmacs * 1e6) if c.gmacs > 0 else 0.0
            compute *= profile.dtype_scale.get(k.dtype, 1.0)
            t = max(1, min(threads, profile.threads_max))
            compute *= (1 - profile.parallel_fraction) + profile.parallel_fraction / t
            memory = nbytes / (c.gbs * 1e6) if c.gbs > 0 else 0.0
            overhead = c.overhead_us / 1e3
        compute /= clock
        transfer_ms, link = 0.0, 0
        if acc is not None:
            here, there = (on_host, on_acc) if where == "cpu" else (on_acc, on_host)
            for name, size in k.inputs:
                if name not in here and (name in there):
                    transfer_ms += acc.transfer_overhead_us / 1e3 + size / (acc.transfer_gbs * 1e6)
                    link += size
                    here.add(name)
            here.update(name for name, _ in k.outputs)
        stream_ms = 0.0
        if profile.onchip is not None and own and k.weight_bytes:
            cached = min(sram_left, k.weight_bytes)
            sram_left -= cached
            streamed = k.weight_bytes - cached
            if streamed:
                stream_ms = streamed / (profile.onchip.link_gbs * 1e6)
                link += int(streamed)
        total = compute + memory + overhead + transfer_ms + stream_ms
        times.append(KernelTime(k, total, compute, where, memory, overhead, transfer_ms, stream_ms,
                                nbytes if own else k.bytes, link, w_bits, a_bits))
    out_ms = 0.0
    if acc is not None:
        for o in graph.outputs:
            if o.name not in on_host:
                out_ms += acc.transfer_overhead_us / 1e3 + o.nbytes / (acc.transfer_gbs * 1e6)
    invoke = profile.invoke_overhead_us / 1e3
    latency = invoke + sum(t.latency_ms for t in times) + out_ms
    energy = None
    if profile.power is not None:
        p = profile.power
        link_bytes = sum(t.link_bytes for t in times) + sum(o.nbytes for o in graph.outputs if out_ms)
        energy = (p.static_w * latency + p.dynamic_w * sum(t.compute_ms for t in times)
                  + p.pj_per_byte * sum(t.bytes for t in times) * 1e-9 + p.link_pj_per_byte * link_bytes * 1e-9)
    return SimResult(latency, tuple(times), energy, invoke, out_ms, sram, flash, acc is not None)
