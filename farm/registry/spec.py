"""The device registry: ``devices.yaml``, validated once at the edge into :class:`DeviceSpec`.

Layout::

    devices:
      - name: host-cpu
        url: local://cpu
        runtime: onnxruntime
        threads: 1

Every error names the file, the line (where YAML tells us), the entry and the field, e.g.
``devices.yaml:7: device 'rpi4' field 'threads': Input should be greater than or equal to 1``.
:func:`add_device` and :func:`remove_device` edit the file round-trip (ruamel.yaml), keeping
the user's comments and order, and validate the result before anything is written.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from farm.errors import RegistryError
from farm.registry.plugins import SCHEMES, plugin_schemes

__all__ = [
    "DeviceSpec",
    "EnergySpec",
    "Registry",
    "DeviceUrl",
    "parse_device_url",
    "load_registry",
]


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class DeviceUrl:
    """A parsed device URL: ``scheme://[user@]host[:port][/path][?query]``."""

    scheme: str
    user: str | None
    host: str
    port: int | None
    path: str
    query: dict[str, str]

    @property
    def raw(self) -> str:
        return _unparse(self)


def _unparse(u: DeviceUrl) -> str:
    auth = f"{u.user}@" if u.user else ""
    port = f":{u.port}" if u.port else ""
    q = "&".join(f"{k}={v}" for k, v in u.query.items())
    return f"{u.scheme}://{auth}{u.host}{port}{u.path}" + (f"?{q}" if q else "")


def parse_device_url(url: str, *, extra_schemes: tuple[str, ...] = ()) -> DeviceUrl:
    """Parse and check a device URL; raises ``ValueError`` with a message a person can act on."""
    if "://" not in url:
        raise ValueError(f"{url!r} is not a device URL (expected scheme://..., e.g. local://cpu)")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    known = SCHEMES + tuple(extra_schemes)
    if scheme not in known:
        raise ValueError(f"unknown scheme {scheme + '://'!r} in {url!r}; known: "
                         + ", ".join(s + "://" for s in known))
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    host = parts.hostname or ""
    if scheme == "local" and host != "cpu":
        raise ValueError(f"local devices are local://cpu, got {url!r}")
    if scheme in ("ssh", "adb", "sim") and not host:
        raise ValueError(f"{url!r} names no host")
    if scheme == "ssh" and not parts.username:
        raise ValueError(f"{url!r} names no user (ssh://user@host[:port])")
    if scheme == "serial" and not parts.path:
        raise ValueError(f"{url!r} names no port (serial:///dev/ttyACM0?baud=115200)")
    return DeviceUrl(scheme, parts.username, host, port, parts.path, query)


class EnergySpec(BaseModel):
    """An optional energy meter attached to a device (read by the device agents)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    meter: Literal["android-battery", "ina2xx", "rapl", "tegrastats", "command", "simulated"]
    path: str | None = None  # sysfs node or hwmon dir for ina2xx/rapl
    command: str | None = None  # for meter: command — prints joules
    sample_hz: float | None = Field(default=None, gt=0)


class DeviceSpec(BaseModel):
    """One entry of ``devices.yaml``. Unknown fields are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: str
    runtime: Literal["onnxruntime", "litert", "torch", "benchmark_model", "eembc", "sim"] | None = None
    threads: int = Field(default=1, ge=1, le=512)
    affinity: tuple[int, ...] | None = None
    tags: tuple[str, ...] = ()
    energy: EnergySpec | None = None
    notes: str | None = None
    # Transport settings used by the remote device kinds (ssh / adb / serial).
    key_file: str | None = None
    key_env: str | None = None
    known_hosts: str | None = None
    trust_on_first_use: bool = False
    delegate: str | None = None
    delegate_options: dict[str, str] | None = None
    benchmark_model: str | None = None
    thermal_gate_c: float | None = Field(default=None, gt=0)  # adb: wait until the battery is below this (default 40)
    python: str | None = None
    # MCUs (serial://): the model the flashed firmware reports, and how to flash another one.
    firmware_model: str | None = None
    flash_command: str | None = None
    timeout_s: float = Field(default=600.0, gt=0)
    # how long the device may stop answering before its jobs fail (default: farm.scheduler.core.OUTAGE_S)
    outage_s: float | None = Field(default=None, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_device_url(v, extra_schemes=plugin_schemes())
        return v

    @field_validator("affinity")
    @classmethod
    def _affinity(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and (not v or any(c < 0 for c in v)):
            raise ValueError("must be a non-empty list of CPU indices >= 0")
        return v

    @property
    def parsed_url(self) -> DeviceUrl:
        return parse_device_url(self.url, extra_schemes=plugin_schemes())

    @property
    def kind(self) -> str:
        return self.parsed_url.scheme

    @property
    def default_runtime(self) -> str | None:
        """The entry's runtime; simulated devices run everything on the simulator, MCUs their
        firmware, phones LiteRT's benchmark_model."""
        return self.runtime or {"sim": "sim", "serial": "eembc", "adb": "benchmark_model"}.get(self.kind)

    def public_dict(self) -> dict[str, Any]:
        """The entry as JSON-able data, without unset optional fields."""
        return self.model_dump(mode="json", exclude_defaults=True) | {"name": self.name, "url": self.url}


@dataclass(frozen=True)
class Registry:
    path: Path
    devices: tuple[DeviceSpec, ...]

    def names(self) -> list[str]:
        return [d.name for d in self.devices]

    def get(self, name: str) -> DeviceSpec:
        for d in self.devices:
            if d.name == name:
                return d
        hint = difflib.get_close_matches(name, self.names(), n=1)
        more = f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(self.names()) or '(none)'}"
        raise RegistryError(f"{self.path}: no device named {name!r}{more}")


# ---------------------------------------------------------------------------- loading


def _yaml():
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _read_doc(path: Path) -> Any:
    from ruamel.yaml.error import YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"{path}: registry file not found (create it, or pass --registry / set HWFARM_REGISTRY)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RegistryError(f"{path}: cannot read registry: {err}") from None
    try:
        return _yaml().load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RegistryError(f"{path}{where}: invalid YAML: {problem}") from None


def _line(node: Any, key: str | int | None = None) -> int | None:
    """1-based line of ``node[key]`` (or of ``node``) in the YAML source; None for nodes
    built in memory (``devices add`` before the file is written)."""
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return None
    try:
        if key is None:
            return lc.line + 1
        if isinstance(key, int):
            return lc.item(key)[0] + 1
        return lc.key(key)[0] + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return lc.line + 1


def _at(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


def _validate(path: Path, doc: Any) -> tuple[DeviceSpec, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, dict):
        raise RegistryError(f"{_at(path, _line(doc) or 1)}: expected a mapping with a 'devices:' list at the top")
    unknown = [k for k in doc if k != "devices"]
    if unknown:
        raise RegistryError(f"{_at(path, _line(doc, unknown[0]))}: unknown top-level key {unknown[0]!r} (only 'devices')")
    if "devices" not in doc:
        raise RegistryError(f"{_at(path, 1)}: expected a mapping with a 'devices:' list at the top")
    entries = doc["devices"]
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise RegistryError(f"{_at(path, _line(doc, 'devices'))}: 'devices' must be a list of entries")
    specs: list[DeviceSpec] = []
    seen: dict[str, int | None] = {}
    for i, entry in enumerate(entries):
        line = _line(entries, i)
        if not isinstance(entry, dict):
            raise RegistryError(f"{_at(path, line)}: entry #{i + 1} must be a mapping with name and url")
        label = f"device {entry['name']!r}" if isinstance(entry.get("name"), str) else f"entry #{i + 1}"
        try:
            spec = DeviceSpec.model_validate(_plain(entry))
        except ValidationError as err:
            e = err.errors()[0]
            field = str(e["loc"][0]) if e["loc"] else None
            where = _line(entry, field) if field in entry else line
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                hint = difflib.get_close_matches(field or "", list(DeviceSpec.model_fields), n=1)
                msg = "unknown field" + (f"; did you mean {hint[0]!r}?" if hint else "")
            elif e["type"] == "missing":
                msg = "is required"
            loc = ".".join(str(p) for p in e["loc"])
            raise RegistryError(f"{_at(path, where)}: {label} field {loc!r}: {msg}") from None
        if spec.name in seen:
            raise RegistryError(f"{_at(path, line)}: duplicate device name {spec.name!r} (first defined on line {seen[spec.name]})")
        seen[spec.name] = line
        specs.append(spec)
    return tuple(specs)


def _plain(node: Any) -> Any:
    """ruamel's commented containers → plain dict/list/str for pydantic."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def load_registry(path: str | os.PathLike[str]) -> Registry:
    """Read and validate the whole registry; raises :class:`RegistryError` on the first problem."""
    p = Path(path)
    return Registry(p, _validate(p, _read_doc(p)))
