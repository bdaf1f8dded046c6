"""Predictor bundles: a directory of data, never a pickle.

::

    <dataset>-predictors/<bundle-id>/
        bundle.json              device, runtime, threads, feature-schema version, dataset hash,
                                 metrics, created, fusion rules, the models' metadata
        latency_ms/<type>.json   one XGBoost model per kernel type (XGBoost's own JSON format)
        energy_mj/<type>.json    the same for energy, where the device measured energy
        spaces/<space>.json      graph-level models of search spaces (nb201, fbnet), if trained

By default bundles live beside the dataset (``hwfarm.db`` → ``hwfarm-predictors/``), so
``--db`` alone selects a whole farm state. Loading checks the format, the feature schema and
that every model file named is there, and says which file and field are wrong if not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm.errors import InputError
from predictors.features import FEATURE_SCHEMA
from predictors.kernel_model import KernelLevelPredictor
from predictors.space_model import SpaceModel

__all__ = ["BUNDLE_FORMAT", "BundleInfo", "bundles_dir", "save_bundle", "read_bundle", "read_spaces", "list_bundles",
           "find_bundle"]

BUNDLE_FORMAT = "hwfarm-predictor-bundle/1"
_ID_OK = re.compile(r"^[A-Za-z0-9._-]+$")


def bundles_dir(db: str | os.PathLike[str]) -> Path:
    """Where the bundles of a dataset live: a folder next to the ``--db`` file."""
    p = Path(db)
    return p.parent / f"{p.stem}-predictors"


@dataclass(frozen=True)
class BundleInfo:
    id: str
    path: Path
    meta: dict[str, Any]

    @property
    def device(self) -> str:
        return str(self.meta.get("device", ""))

    @property
    def created(self) -> str:
        return str(self.meta.get("created", ""))

    def summary(self) -> dict[str, Any]:
        m = self.meta
        return {"id": self.id, "path": str(self.path), "device": m.get("device"), "runtime": m.get("runtime"),
                "threads": m.get("threads"), "created": m.get("created"), "dataset_hash": m.get("dataset_hash"),
                "feature_schema": m.get("feature_schema"), "simulated": m.get("simulated"),
                "energy": m.get("energy") is not None, "spaces": sorted(m.get("spaces") or {}),
                "metrics": m.get("metrics", {})}


def save_bundle(directory: Path, meta: dict[str, Any], latency: KernelLevelPredictor,
                energy: KernelLevelPredictor | None = None, spaces: dict[str, SpaceModel] | None = None) -> BundleInfo:
    """Write a bundle atomically: into a temp dir beside it, then renamed into place."""
    bid = str(meta["id"])
    if not _ID_OK.match(bid):
        raise InputError(f"bundle id {bid!r}: use letters, digits, '.', '_' and '-' only")
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / bid
    if final.exists():
        raise InputError(f"{final}: a bundle with this id exists already")
    tmp = Path(tempfile.mkdtemp(prefix=f".{bid}.", dir=directory))
    try:
        full = dict(meta, format=BUNDLE_FORMAT, feature_schema=FEATURE_SCHEMA)
        for key, model in (("latency", latency), ("energy", energy)):
            if model is None:
                full[key] = None
                continue
            state, files = model.to_state()
            for name, raw in files.items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(raw)
            full[key] = state
        full["spaces"] = {}
        for name, sm in (spaces or {}).items():
            sstate, sraw = sm.to_state()
            if sraw is not None:
                (tmp / "spaces").mkdir(exist_ok=True)
                (tmp / "spaces" / f"{name}.json").write_bytes(sraw)
                sstate["model_file"] = f"spaces/{name}.json"
            full["spaces"][name] = sstate
        (tmp / "bundle.json").write_text(json.dumps(full, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BundleInfo(bid, final, full)


def _read_meta(path: Path) -> dict[str, Any]:
    f = path / "bundle.json"
    if not f.is_file():
        raise InputError(f"{path}: not a predictor bundle (no bundle.json)")
    try:
        meta = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{f}: unreadable bundle.json: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise InputError(f"{f}: field 'format' must be {BUNDLE_FORMAT!r}")
    if meta.get("feature_schema") != FEATURE_SCHEMA:
        raise InputError(f"{f}: field 'feature_schema' is {meta.get('feature_schema')!r}, this hwfarm reads "
                         f"{FEATURE_SCHEMA}; train the predictor again (hwfarm predictor train)")
    return meta


def _model_file(p: Path, name: str, where: str) -> bytes:
    f = (p / name).resolve()
    if p.resolve() not in f.parents:
        raise InputError(f"{p / 'bundle.json'}: {where} points outside the bundle")
    if not f.is_file():
        raise InputError(f"{p}: model file {name} ({where}) is missing")
    return f.read_bytes()


def read_spaces(info: BundleInfo) -> dict[str, SpaceModel]:
    """The bundle's graph-level models of search spaces, by space name."""
    out = {}
    for name, state in (info.meta.get("spaces") or {}).items():
        try:
            raw = _model_file(info.path, state["model_file"], f"spaces.{name}.model_file") \
                if state.get("model_file") else None
            out[name] = SpaceModel.from_state(state, raw)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{info.path / 'bundle.json'}: field 'spaces.{name}': {e}") from None
    return out


def read_bundle(path: str | os.PathLike[str]) -> tuple[BundleInfo, KernelLevelPredictor, KernelLevelPredictor | None]:
    """Load a bundle directory: its info and its latency (and energy) predictors."""
    p = Path(path)
    meta = _read_meta(p)
    models: list[KernelLevelPredictor | None] = []
    for key in ("latency", "energy"):
        state = meta.get(key)
        if state is None:
            if key == "latency":
                raise InputError(f"{p / 'bundle.json'}: field 'latency' is missing")
            models.append(None)
            continue
        files: dict[str, bytes] = {}
        try:
            for t, tmeta in state["types"].items():
                name = tmeta.get("model_file")
                if name is not None:
                    files[name] = _model_file(p, name, f"{key}.types.{t}.model_file")
            models.append(KernelLevelPredictor.from_state(state, files))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{p / 'bundle.json'}: field {key!r}: {e}") from None
    assert models[0] is not None
    return BundleInfo(str(meta.get("id", p.name)), p, meta), models[0], models[1]


def list_bundles(directory: Path, *, device: str | None = None) -> list[BundleInfo]:
    """Bundles in a directory, newest first; unreadable ones are skipped."""
    if not directory.is_dir():
        return []
    found = []
    for d in directory.iterdir():
        if not d.is_dir() or d.name.startswith("."):
            continue
        try:
            meta = _read_meta(d)
        except InputError:
            continue
        if device is None or meta.get("device") == device:
            found.append(BundleInfo(str(meta.get("id", d.name)), d, meta))
    return sorted(found, key=lambda b: (b.created, b.id), reverse=True)


def find_bundle(directory: Path, *, device: str | None = None, bundle: str | None = None) -> BundleInfo:
    """The bundle named (an id in ``directory`` or a path), else the newest for ``device``."""
    if bundle is not None:
        p = Path(bundle)
        if (p / "bundle.json").is_file():
            return BundleInfo(p.name, p, _read_meta(p))
        if _ID_OK.match(bundle) and (directory / bundle / "bundle.json").is_file():
            return BundleInfo(bundle, directory / bundle, _read_meta(directory / bundle))
        raise InputError(f"no predictor bundle {bundle!r} (looked for {p}/bundle.json and in {directory})")
    found = list_bundles(directory, device=device)
    if not found:
        raise InputError(f"no predictor trained for device {device!r} in {directory}; "
                         f"train one: hwfarm predictor train --device {device}")
    return found[0]
