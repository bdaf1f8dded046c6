"""Reading model files: one place that turns OS errors into a ModelError naming the file."""

from __future__ import annotations

from pathlib import Path

from farm.errors import ModelError

__all__ = ["read_model_bytes"]


def read_model_bytes(p: Path) -> bytes:
    """A model file's bytes; a missing or unreadable file is a ModelError naming it."""
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{p}: model file not found") from None
    except IsADirectoryError:
        raise ModelError(f"{p}: is a directory, not a model file") from None
    except OSError as err:
        raise ModelError(f"{p}: cannot read model: {err.strerror or err}") from None
    return data
