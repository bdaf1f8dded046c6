"""The coordinator's side of the agent protocol (see ``farm/agent/__main__.py``).

:class:`AgentProcess` runs an agent as a child process and exchanges JSON lines with it,
with a deadline on every request: a request that runs past it kills the agent (the next
request starts a fresh one). Remote transports reuse the same protocol over their channel.
"""

from __future__ import annotations

import collections
import json
import queue
import subprocess
import threading
from typing import Any, Sequence

from ..errors import DeviceError, DeviceTimeout, RuntimeFailure

__all__ = ["AgentProcess"]

_EOF = object()


class AgentProcess:
    def __init__(self, argv: Sequence[str], *, name: str, env: dict[str, str] | None = None) -> None:
        self._argv = list(argv)
        self._env = env
        self._name = name
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[object] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self.hello: dict[str, Any] = {}

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 60.0) -> dict[str, Any]:
        if self.running:
            return self.hello
        try:
            self._proc = subprocess.Popen(
                self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, bufsize=1, env=self._env,
            )
        except OSError as err:
            raise DeviceError(f"device {self._name!r}: cannot start agent {self._argv[0]}: {err}") from None
        self._lines = queue.Queue()
        self._stderr.clear()
        proc = self._proc
        threading.Thread(target=self._pump, args=(proc.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._drain, args=(proc.stderr,), daemon=True).start()
        self.hello = self.request({"op": "hello"}, timeout_s=timeout_s)
        return self.hello

    @staticmethod
    def _pump(stream: Any, lines: queue.Queue[object]) -> None:
        for line in stream:
            lines.put(line)
        lines.put(_EOF)

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self._stderr.append(line.rstrip())

    def request(self, req: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """Send one request and wait for its reply; kills the agent past ``timeout_s``."""
        if not self.running:
            if req.get("op") == "hello":
                raise RuntimeFailure(f"device {self._name!r}: agent exited at start{self._tail()}")
            self.start()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(req) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.kill()
            raise RuntimeFailure(f"device {self._name!r}: agent is gone{self._tail()}") from None
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            self.kill()
            raise DeviceTimeout(f"device {self._name!r}: no answer within {timeout_s:g} s; agent killed") from None
        if line is _EOF:
            self.kill()
            raise RuntimeFailure(f"device {self._name!r}: agent died while running the request{self._tail()}")
        try:
            reply = json.loads(str(line))
        except json.JSONDecodeError:
            self.kill()
            raise RuntimeFailure(f"device {self._name!r}: agent sent a malformed reply: {str(line)[:120]!r}") from None
        if not isinstance(reply, dict):
            raise RuntimeFailure(f"device {self._name!r}: agent reply is not an object")
        return reply

    def _tail(self) -> str:
        lines = [s for s in self._stderr if s.strip()]
        return f": {lines[-1]}" if lines else ""

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self._proc = None
