"""Reference networks by name: ``NETS[name]`` says how to build one and with which options,
:func:`build_net` builds it (graph IR, no torch), :func:`parse_net_options` reads the option
string the CLI takes (``"alpha=0.5,resolution=160"``, or ``default``).

:func:`match_published` maps a row of ``../shared/data/published-latency/published_latency.csv``
(model, input, precision) to the net and options it measured, for calibrating simulator
profiles on published latencies.

Every net can be built at ``dtype="int8"`` for int8-only accelerators (not exportable to
ONNX then). The published sizes each builder reproduces are cited in its module.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from farm.errors import InputError
from farm.ir.graph import DTYPE_BYTES, Graph
from farm.zoo import classic, mcu, mobilenet, resnet

__all__ = ["NetSpec", "NETS", "build_net", "parse_net_options", "net_names", "match_published"]


@dataclass(frozen=True)
class NetSpec:
    """A named reference network: its builder, what it is, and its default input."""

    name: str
    builder: Callable[..., Graph]
    description: str
    fixed: Mapping[str, Any] = field(default_factory=dict)  # options the name pins (e.g. depth=18)

    def options(self) -> dict[str, Any]:
        """Options a user may set, with their defaults (``dtype`` included)."""
        sig = inspect.signature(self.builder)
        return {k: p.default for k, p in sig.parameters.items()
                if p.default is not inspect.Parameter.empty and k not in self.fixed and k != "name"}


NETS: dict[str, NetSpec] = {s.name: s for s in (
    NetSpec("mobilenet_v1", mobilenet.mobilenet_v1, "MobileNetV1 (TF-slim), ImageNet 224, 569 M MACs at α=1"),
    NetSpec("mobilenet_v2", mobilenet.mobilenet_v2, "MobileNetV2 (TF-slim/torchvision), ImageNet 224, 301 M MACs"),
    NetSpec("resnet18", resnet.resnet, "ResNet-18 (torchvision), ImageNet 224, 1.81 G MACs", {"depth": 18}),
    NetSpec("resnet50", resnet.resnet, "ResNet-50 v1.5 (torchvision), ImageNet 224, 4.09 G MACs", {"depth": 50}),
    NetSpec("squeezenet1_1", classic.squeezenet1_1, "SqueezeNet 1.1 (torchvision), ImageNet 224, 0.35 G MACs"),
    NetSpec("googlenet", classic.googlenet, "GoogLeNet / Inception v1 (torchvision), ImageNet 224, 1.50 G MACs"),
    NetSpec("vgg16", classic.vgg16, "VGG-16 (torchvision), ImageNet 224, 15.5 G MACs, 138 M params"),
    NetSpec("ds_cnn", mcu.ds_cnn, "MLPerf Tiny KWS DS-CNN, 49x10x1 MFCC, 12 classes"),
    NetSpec("resnet8", mcu.resnet8, "MLPerf Tiny IC ResNet-8, CIFAR-10 32x32"),
    NetSpec("mobilenet_v1_vww", mcu.mobilenet_v1_vww, "MLPerf Tiny VWW MobileNetV1-0.25, 96x96, 2 classes"),
    NetSpec("fc_autoencoder", mcu.fc_autoencoder, "MLPerf Tiny AD FC AutoEncoder, ToyADMOS 640 inputs"),
)}


def net_names() -> list[str]:
    return list(NETS)


def _coerce(net: str, key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str):
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            return value
        if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"net {net!r}: option {key}={value!r} must be an integer")
        if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"net {net!r}: option {key}={value!r} must be a number")
        return value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        kind = "true or false" if isinstance(default, bool) else "an integer" if isinstance(default, int) else "a number"
        raise InputError(f"net {net!r}: option {key}={value!r} must be {kind}") from None
    return value


def parse_net_options(spec: str) -> dict[str, str]:
    """``"alpha=0.5,resolution=160"`` → {"alpha": "0.5", "resolution": "160"}; ``""`` or ``"default"`` → {}."""
    spec = spec.strip()
    if spec in ("", "default"):
        return {}
    out: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"options {spec!r}: expected key=value[,key=value…] or 'default', got {part!r}")
        out[key.strip()] = value.strip()
    return out


def build_net(name: str, **options: Any) -> Graph:
    """Build a reference net by name; string option values are converted to the option's type.

    Unknown nets and options, and values the builder rejects, are InputErrors naming them.
    """
    if name not in NETS:
        raise InputError(f"unknown net {name!r}; known: {', '.join(NETS)}")
    spec = NETS[name]
    allowed = spec.options()
    for key in options:
        if key not in allowed:
            raise InputError(f"net {name!r}: unknown option {key!r}; options: "
                             + ", ".join(f"{k}={v}" for k, v in allowed.items()))
    kwargs = {k: _coerce(name, k, v, allowed[k]) for k, v in options.items()}
    for k, v in kwargs.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
            raise InputError(f"net {name!r}: option {k}={v} must be positive")
    if "dtype" in kwargs and kwargs["dtype"] not in DTYPE_BYTES:
        raise InputError(f"net {name!r}: unknown dtype {kwargs['dtype']!r}; e.g. float32, float16, int8")
    try:
        return spec.builder(**spec.fixed, **kwargs)
    except ValueError as err:
        raise InputError(f"net {name!r}: {err}") from None


# Published-latency model names (../shared/data/published-latency) → our nets. Checked in
# order; the first pattern found in the lower-cased model name wins. None: not in the zoo
# (detection/segmentation heads, Inception v3/v4, EfficientNet, MobileNetV3, BERT...), or a
# version the source does not pin (TFLite zoo's "SqueezeNet").
_PUBLISHED_PATTERNS: tuple[tuple[str, str | None], ...] = (
    ("ssd", None), ("deeplab", None), ("mosaic", None), ("mobilebert", None), ("efficientnet", None),
    ("nasnet", None), ("inception v4", None), ("inception_v4", None), ("inception_v3", None),
    ("inception_resnet", None), ("mobilenet v3", None), ("mobilenetedgetpu", None), ("mobiledet", None),
    ("ds-cnn", "ds_cnn"), ("resnet-8", "resnet8"), ("visual wake words", "mobilenet_v1_vww"),
    ("autoencoder", "fc_autoencoder"),
    ("mobilenet v2", "mobilenet_v2"), ("mobilenet_v2", "mobilenet_v2"),
    ("mobilenet v1", "mobilenet_v1"), ("mobilenet_v1", "mobilenet_v1"), ("mobilenet_1.0_224", "mobilenet_v1"),
    ("'mobilenet", "mobilenet_v1"),  # ncnn's built-in 'mobilenet' / 'mobilenet_int8'
    ("resnet-50", "resnet50"), ("resnet50", "resnet50"), ("resnet_v1_50", "resnet50"), ("resnet18", "resnet18"),
    ("squeezenet1_1", "squeezenet1_1"), ("inception v1", "googlenet"), ("inception_v1", "googlenet"),
    ("vgg16", "vgg16"), ("vgg_16", "vgg16"),
)


def match_published(model: str, input_desc: str = "", precision: str = "") -> tuple[str, dict[str, Any]] | None:
    """The zoo net (name, options) a published-latency row measured, or None if it is not in
    the zoo. ``input_desc`` (``224x224x3``, ``1x3x224x224``, ``299x299x3 (…)``) sets the
    resolution of image nets; an int8/uint8 ``precision`` (or ``_int8``/``quant`` in the model
    name) gives ``dtype="int8"``, fp16 ``dtype="float16"``."""
    import re

    low = model.lower()
    name = next((net for pat, net in _PUBLISHED_PATTERNS if pat in low), None)
    if name is None:
        return None
    options: dict[str, Any] = {}
    if "resolution" in NETS[name].options():
        m = re.match(r"\s*(?:1x3x)?(\d+)x(\d+)", input_desc)
        if m and m.group(1) == m.group(2):
            res = int(m.group(1))
            if res != NETS[name].options()["resolution"]:
                options["resolution"] = res
    prec = precision.lower()
    if prec.startswith(("int8", "uint8")) or "_int8" in low or "quant" in low:
        options["dtype"] = "int8"
    elif prec.startswith("fp16"):
        options["dtype"] = "float16"
    return name, options
