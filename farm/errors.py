"""Errors a person can act on.

Every error hwfarm raises on purpose is a :class:`HwfarmError`. The CLI prints its message
as one line on stderr and exits with :attr:`HwfarmError.exit_code`: 2 for bad input
(a file, the registry, a model), 1 for device and runtime failures.
"""

from __future__ import annotations

__all__ = [
    "HwfarmError",
    "InputError",
    "RegistryError",
    "ModelError",
    "DeviceError",
    "DeviceUnavailable",
    "DeviceUnauthorized",
    "DeviceTimeout",
    "RuntimeFailure",
    "StoreError",
]


class HwfarmError(Exception):
    """Base class. ``str(err)`` is the one line shown to the user."""

    exit_code = 1


class InputError(HwfarmError):
    """Something the user handed us is wrong: a file, a field, an argument."""

    exit_code = 2


class RegistryError(InputError):
    """``devices.yaml`` is unreadable or invalid. The message names file, line, entry, field."""


class ModelError(InputError):
    """A model file is missing, truncated, or not something we can read."""


class DeviceError(HwfarmError):
    """A device could not do what was asked (unreachable, crashed, refused)."""


class DeviceUnavailable(DeviceError):
    """The device kind is known but cannot be used here (not implemented yet, missing extra)."""


class DeviceUnauthorized(DeviceError):
    """The device refused our key (a phone that has not allowed this computer, SSH auth
    failed), or we refused its host key."""


class DeviceTimeout(DeviceError):
    """A job ran past its deadline; the process running it was killed."""


class RuntimeFailure(DeviceError):
    """The inference runtime failed on a model it accepted."""


class StoreError(HwfarmError):
    """The dataset file is unusable (newer schema, corrupt)."""

    exit_code = 2
