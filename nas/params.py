"""A space's choices as named categorical parameters: what Optuna samplers and the evolution
strategy see of an architecture.

An architecture of NB201 is 6 edge ops (``edge0`` … ``edge5``, the string's order); one of
FBNet is 22 layer ops (``layer00`` … ``layer21``). :func:`decode` turns a full assignment back
into the space's canonical spelling, :func:`encode` a spelling into its assignment, and
:func:`suggest` asks an Optuna trial for one (``trial.suggest_categorical`` per choice), so
every Optuna sampler works on every space listed here.

A space registered in :mod:`farm.zoo.spaces` joins by offering the same three things itself:
``params() -> ((name, options), …)``, ``from_params(values) -> arch`` and
``to_params(arch) -> {name: option}`` (options are strings, ints or floats).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from farm.errors import InputError
from farm.zoo import fbnet, nb201

__all__ = ["choices", "decode", "encode", "suggest"]

_CHOICES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "nb201": tuple((f"edge{i}", nb201.OPS) for i in range(6)),
    "fbnet": tuple((f"layer{i:02d}", fbnet.OPS) for i in range(fbnet.NUM_LAYERS)),
}


def _own(space: str) -> Any:
    """The registered space object when it defines its own parameters, else None."""
    from farm.zoo.spaces import SPACES

    obj = SPACES.get(space)
    return obj if obj is not None and hasattr(obj, "params") else None


def choices(space: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """(parameter name, its options) of each choice of ``space``, in the spelling's order."""
    if space in _CHOICES:
        return _CHOICES[space]
    own = _own(space)
    if own is not None:
        return tuple(own.params())
    from farm.zoo.spaces import SPACES

    have = sorted(set(_CHOICES) | {n for n in SPACES if _own(n) is not None})
    raise InputError(f"space {space!r} has no search parameters yet (have: {', '.join(have)})")


def decode(space: str, values: Mapping[str, Any]) -> str:
    """A full assignment of :func:`choices` → the architecture in the space's canonical spelling."""
    if space not in _CHOICES:
        choices(space)
        return str(_own(space).from_params(values))
    ops = [str(values[name]) for name, _ in choices(space)]
    if space == "nb201":
        return nb201.arch_str_from_ops(ops)
    return fbnet.arch_str(fbnet.parse_arch(ops))


def encode(space: str, arch: str) -> dict[str, Any]:
    """An architecture (canonical spelling) → its assignment of :func:`choices`."""
    if space == "nb201":
        ops: tuple[str, ...] = nb201.ops_from_arch_str(arch)
    elif space == "fbnet":
        ops = tuple(fbnet.OPS[i] for i in fbnet.parse_arch(arch))
    else:
        choices(space)
        return dict(_own(space).to_params(arch))
    return {name: op for (name, _), op in zip(choices(space), ops, strict=True)}


def suggest(trial: Any, space: str) -> str:
    """Ask an Optuna trial for each choice of ``space``; the architecture it picked."""
    return decode(space, {name: trial.suggest_categorical(name, list(opts)) for name, opts in choices(space)})
