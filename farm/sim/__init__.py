"""Simulated devices: calibrated analytical models of classes of hardware (``sim://PROFILE``).

A profile is a data file in ``farm/sim/profiles/`` (parameters plus the sources of the
figures it is calibrated on); :mod:`farm.sim.model` turns a graph into per-kernel latencies,
placement (accelerator or CPU fallback), memory checks and energy; :class:`farm.devices.sim.SimDevice`
serves them through the Device protocol with seeded noise and thermal state, and marks every
record ``simulated``. :mod:`farm.sim.calibrate` fits CPU profiles on measured NB201 latencies,
:mod:`farm.sim.published` fits accelerator/MCU profiles on published figures. A simulated
device never stands in for the host CPU, which is a real device.
"""
