"""MCUs over a serial line: the device (:mod:`.device`) and the EEMBC / MLPerf Tiny runner
protocol it speaks (:mod:`.eembc`)."""

from farm.devices.serial.device import SerialDevice

__all__ = ["SerialDevice"]
