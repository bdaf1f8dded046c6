"""Search spaces: sampling, encodings and graph building for architecture families.

Graph builders live in ``farm/zoo`` (the farm and the predictors need them too); a space
adds what a search needs on top: how to sample, name and look up candidates.
"""

from __future__ import annotations

from .nb201 import NB201Space

SPACES = {"nb201": NB201Space}

__all__ = ["SPACES", "NB201Space"]
