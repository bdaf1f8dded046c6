"""Simulated devices: calibrated analytical models of classes of hardware (``sim://PROFILE``).

A profile is a data file in ``farm/sim/profiles/`` (parameters plus the sources of the
figures it is calibrated on); :mod:`farm.sim.model` turns a graph into per-kernel latencies
and energy; :class:`farm.sim.device.SimDevice` serves them through the Device protocol with
seeded noise, and marks every record ``simulated``. A simulated device never stands in
for the host CPU, which is a real device.
"""
