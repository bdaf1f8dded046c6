"""The on-device agent: everything that runs where the model runs.

This package imports nothing from the rest of ``farm`` (only its own modules, the
standard library, numpy and one inference runtime), so the coordinator can copy it to a
board that has nothing else installed and run ``python3 -m <dir>`` there. The host CPU
runs the very same agent as a local subprocess.
"""
