"""Device kinds by URL scheme: the built-in ones and third-party kinds from the
``hwfarm.devices`` entry-point group (each loads only when a device of its kind opens)."""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

__all__ = ["SCHEMES", "device_plugins", "plugin_schemes"]

# Schemes hwfarm knows; which ones can run here is the device factory's business (farm.devices).
SCHEMES = ("local", "ssh", "adb", "serial", "sim")


@lru_cache(maxsize=1)
def device_plugins() -> dict[str, EntryPoint]:
    """Third-party device kinds by scheme (a plugin cannot replace a built-in kind)."""
    return {ep.name: ep for ep in entry_points(group="hwfarm.devices") if ep.name not in SCHEMES}


def plugin_schemes() -> tuple[str, ...]:
    return tuple(device_plugins())
