"""``python -m farm.cli``: the ``hwfarm`` command."""

from farm.cli import main

main()
