"""Editing ``devices.yaml`` round-trip (ruamel.yaml): the user's comments and order are kept,
and the edited document is validated whole before anything is written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from farm.errors import RegistryError
from farm.registry.spec import DeviceSpec, Registry, _read_doc, _validate, _yaml

__all__ = ["add_device", "remove_device"]


def _coerce(raw: str) -> Any:
    """``--set key=value`` values: YAML scalars/flow collections (``2``, ``true``, ``[0, 1]``)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe").load(raw)
    except YAMLError:
        return raw


def _write_atomic(path: Path, doc: Any) -> None:
    import io

    buf = io.StringIO()
    _yaml().dump(doc, buf)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def add_device(path: str | os.PathLike[str], name: str, url: str, settings: dict[str, str] | None = None) -> DeviceSpec:
    """Append a device entry; the new file is validated whole before it replaces the old one."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    p = Path(path)
    doc = _read_doc(p) if p.exists() else None
    if doc is None:
        doc = CommentedMap()
    _validate(p, doc if doc else None)  # refuse to edit a file that is already broken
    if "devices" not in doc or doc["devices"] is None:
        doc["devices"] = CommentedSeq()
    entry = CommentedMap()
    entry["name"] = name
    entry["url"] = url
    for key, raw in (settings or {}).items():
        if key in ("name", "url"):
            raise RegistryError(f"{p}: set name and url as arguments, not with --set {key}=...")
        entry[key] = _coerce(raw)
    doc["devices"].append(entry)
    specs = _validate(p, doc)
    _write_atomic(p, doc)
    return specs[-1]


def remove_device(path: str | os.PathLike[str], name: str) -> None:
    p = Path(path)
    doc = _read_doc(p)
    reg = Registry(p, _validate(p, doc))
    reg.get(name)  # clear error when absent
    entries = doc["devices"]
    idx = next(i for i, e in enumerate(entries) if e.get("name") == name)
    del entries[idx]
    _write_atomic(p, doc)
