"""Torch modules of every architecture hwfarm trains, scores with proxies, prunes or exports.

One entry point, :func:`build_module`, takes an architecture spec — the contract of
``hwfarm train --arch`` — and the data's shape:

- a reference network with options: ``mobilenet_v2``, ``mobilenet_v2:width=0.5``,
  ``resnet8``, ``resnet18``, ``vgg:width=0.25``, ``ds_cnn`` (``name[:k=v,…]``);
- an architecture of a search space, the space's name then its canonical spelling verbatim:
  ``nb201:|nor_conv_3x3~0|+|…|``, ``fbnet:k3_e1-…``, ``mbv3:…``, ``mcu:…``.

Builders live one family per module and are imported on first use (torch is heavy):
``FAMILIES`` maps a name to ``"module:function"``; each function takes
``(arch: str, options: dict[str, str], *, num_classes, in_channels, input_size)`` and returns
an ``nn.Module`` that maps (n, in_channels, input_size, input_size) to (n, num_classes) logits.
"""

from __future__ import annotations

import importlib
from typing import Any

from farm.errors import InputError

__all__ = ["FAMILIES", "build_module", "parse_arch_spec", "family_names"]

# name -> "module:function" (resolved lazily). Search spaces take the rest of the spec verbatim.
FAMILIES: dict[str, str] = {}
SPACE_FAMILIES: set[str] = set()


def register(name: str, target: str, *, space: bool = False) -> None:
    """Add a builder (``"package.module:function"``); ``space=True`` for a search space, whose
    spec after ``name:`` is an architecture string rather than options."""
    FAMILIES[name] = target
    if space:
        SPACE_FAMILIES.add(name)


def family_names() -> list[str]:
    return sorted(FAMILIES)


def parse_arch_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``name[:rest]`` → (name, arch string for a space or "", options for a reference net)."""
    name, _, rest = spec.strip().partition(":")
    if name not in FAMILIES:
        raise InputError(f"unknown architecture {name!r}; known: {', '.join(family_names())}")
    if name in SPACE_FAMILIES:
        if not rest:
            raise InputError(f"architecture {name!r} needs its spelling after the colon ({name}:ARCH)")
        return name, rest, {}
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        k, eq, v = part.partition("=")
        if not eq or not k.strip() or not v.strip():
            raise InputError(f"architecture {spec!r}: option {part!r} is not key=value")
        options[k.strip()] = v.strip()
    return name, rest, options


def build_module(spec: str, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> Any:
    """The torch module of ``spec`` for inputs (n, in_channels, input_size, input_size)."""
    name, arch, options = parse_arch_spec(spec)
    mod, _, fn = FAMILIES[name].partition(":")
    builder = getattr(importlib.import_module(mod), fn)
    return builder(arch, options, num_classes=num_classes, in_channels=in_channels, input_size=input_size)


# The families hwfarm ships (each module imports torch; nothing is imported until built).
for _name, _target in (("mobilenet_v2", "nas.modules.reference:mobilenet_v2"),
                       ("resnet8", "nas.modules.reference:resnet8"),
                       ("resnet18", "nas.modules.reference:resnet18"),
                       ("vgg", "nas.modules.reference:vgg"),
                       ("ds_cnn", "nas.modules.reference:ds_cnn")):
    register(_name, _target)
for _name in ("nb201", "fbnet", "mbv3", "mcu"):
    register(_name, f"nas.modules.{_name}:build", space=True)
