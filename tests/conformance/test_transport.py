"""The AgentTransport conformance suite (:mod:`farm.testing.transport`) over LocalTransport
(the host) and SshTransport (a real sshd on loopback; skipped where openssh-server is absent)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest

from farm.devices.agent_device import AgentTransport, LocalTransport
from farm.registry.spec import DeviceSpec
from farm.testing.transport import TRANSPORT_CHECKS


def _ssh(request: pytest.FixtureRequest, tmp: Path) -> Callable[[], AgentTransport]:
    from farm.devices.ssh import SshTransport

    server = request.getfixturevalue("sshd")
    known = tmp / "known_hosts"
    known.write_text(server.known_hosts_line())
    spec = DeviceSpec(name="board", url=server.url(), key_file=str(server.client_key), known_hosts=str(known),
                      python=sys.executable)
    return lambda: SshTransport(spec)


TRANSPORTS: dict[str, Callable[[pytest.FixtureRequest, Path], Callable[[], AgentTransport]]] = {
    "local": lambda request, tmp: LocalTransport,
    "ssh": _ssh,
}


@pytest.fixture(params=sorted(TRANSPORTS))
def make_transport(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], AgentTransport]:
    return TRANSPORTS[request.param](request, tmp_path)


@pytest.mark.parametrize("check", TRANSPORT_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_transport(make_transport: Callable[[], AgentTransport],
                   check: Callable[[Callable[[], AgentTransport]], None]) -> None:
    check(make_transport)
