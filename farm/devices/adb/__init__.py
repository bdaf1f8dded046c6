"""Android phones over ADB: the transport and device (:mod:`.device`), LiteRT
``benchmark_model``'s output parser (:mod:`.benchmark_model`) and the battery meter (:mod:`.meters`)."""

from farm.devices.adb.device import AdbDevice, AdbTransport

__all__ = ["AdbDevice", "AdbTransport"]
