"""Conformance suites: one per extension point, run over every implementation in this repo
(``tests/conformance``) and importable by a plugin author to run over theirs.

Every suite has the same shape (scikit-learn's ``check_estimator``): a module per protocol
with check functions ``check_*(make)`` that take a zero-argument factory of fresh instances
and fail with an AssertionError that names what broke, a tuple of them (``DEVICE_CHECKS``, …)
to parametrize a test over, and ``check_<protocol>(make)`` that runs them all::

    import pytest
    from farm.testing.device import DEVICE_CHECKS

    @pytest.mark.parametrize("check", DEVICE_CHECKS)
    def test_my_device(check):
        check(lambda: MyDevice(my_spec))

Nothing here imports pytest; checks clean up what they create.
"""

from farm.testing.device import DEVICE_CHECKS, check_device
from farm.testing.executor import EXECUTOR_CHECKS, check_executor
from farm.testing.meter import METER_CHECKS, check_meter
from farm.testing.runner import RUNNER_CHECKS, check_runner
from farm.testing.space import SPACE_CHECKS, check_space
from farm.testing.store import STORE_CHECKS, check_store
from farm.testing.transport import TRANSPORT_CHECKS, check_transport

__all__ = ["DEVICE_CHECKS", "check_device", "TRANSPORT_CHECKS", "check_transport", "RUNNER_CHECKS", "check_runner",
           "METER_CHECKS", "check_meter",
           "STORE_CHECKS", "check_store",
           "EXECUTOR_CHECKS", "check_executor",
           "SPACE_CHECKS", "check_space"]
