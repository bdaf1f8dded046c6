"""The device registry, ``devices.yaml``: parsed once at the edge into :class:`DeviceSpec`
(:mod:`.spec`), edited round-trip keeping comments (:mod:`.edit`), device kinds by URL
scheme including third-party plugins (:mod:`.plugins`)."""

from farm.registry.edit import add_device, remove_device
from farm.registry.plugins import SCHEMES, plugin_schemes
from farm.registry.spec import DeviceSpec, DeviceUrl, EnergySpec, Registry, load_registry, parse_device_url

__all__ = ["DeviceSpec", "EnergySpec", "Registry", "DeviceUrl", "parse_device_url", "load_registry", "add_device",
           "remove_device", "SCHEMES", "plugin_schemes"]
