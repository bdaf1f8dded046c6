"""The coordinator's side of the agent protocol (see ``farm/agent/__main__.py``).

An :class:`AgentSession` talks JSON lines to one running agent through a :class:`Pipe` —
a child process here (:class:`SubprocessPipe`), an SSH exec channel for boards — with a
deadline on every request. A request past its deadline kills the agent; the next request
starts a fresh one. Output is drained by reader threads as it arrives, so a chatty agent
can never fill a buffer and deadlock the session.
"""

from __future__ import annotations

import collections
import json
import queue
import subprocess
import threading
from typing import Any, Callable, Protocol, Sequence

from farm.errors import DeviceError, DeviceTimeout, RuntimeFailure

__all__ = ["Pipe", "SubprocessPipe", "AgentSession", "LineSink"]

# Called with each stdout line of the agent, and with None once at end of stream.
LineSink = Callable[[str | None], None]


class Pipe(Protocol):
    def write(self, text: str) -> None: ...

    def alive(self) -> bool: ...

    def kill(self) -> None:
        """Stop the agent now (SIGKILL locally, ``kill -9`` of its pid on a board)."""
        ...

    def close(self) -> None:
        """End of input to the agent, a short wait for it to exit, then kill."""
        ...


class SubprocessPipe:
    def __init__(self, argv: Sequence[str], on_line: LineSink, on_err: Callable[[str], None],
                 *, env: dict[str, str] | None = None) -> None:
        try:
            self._proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        except OSError as err:
            raise DeviceError(f"cannot start agent {argv[0]}: {err}") from None
        threading.Thread(target=self._pump, args=(self._proc.stdout, on_line), daemon=True).start()
        threading.Thread(target=self._drain, args=(self._proc.stderr, on_err), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, on_line: LineSink) -> None:
        for line in stream:
            on_line(line)
        on_line(None)

    @staticmethod
    def _drain(stream: Any, on_err: Callable[[str], None]) -> None:
        for line in stream:
            on_err(line.rstrip())

    def write(self, text: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(text)
        self._proc.stdin.flush()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def close(self) -> None:
        if self._proc.poll() is None and self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


_EOF = object()


class AgentSession:
    """One agent, started on first use. ``open_pipe(on_line, on_err)`` starts it."""

    def __init__(self, open_pipe: Callable[[LineSink, Callable[[str], None]], Pipe], *, name: str) -> None:
        self._open = open_pipe
        self._name = name
        self._pipe: Pipe | None = None
        self._lines: queue.Queue[object] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self.hello: dict[str, Any] = {}

    @property
    def running(self) -> bool:
        return self._pipe is not None and self._pipe.alive()

    def start(self, timeout_s: float = 60.0) -> dict[str, Any]:
        if self.running:
            return self.hello
        lines: queue.Queue[object] = queue.Queue()
        self._lines = lines
        self._stderr.clear()
        self._pipe = self._open(lambda s: lines.put(_EOF if s is None else s), self._stderr.append)
        self.hello = self._exchange({"op": "hello"}, timeout_s)
        return self.hello

    def request(self, req: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """Send one request and wait for its reply; kills the agent past ``timeout_s``."""
        if not self.running:
            self.start()
        return self._exchange(req, timeout_s)

    def _exchange(self, req: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        pipe = self._pipe
        assert pipe is not None
        try:
            pipe.write(json.dumps(req) + "\n")
        except OSError:
            self.kill()
            raise RuntimeFailure(f"device {self._name!r}: agent is gone{self._tail()}") from None
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            self.kill()
            raise DeviceTimeout(f"device {self._name!r}: no answer within {timeout_s:g} s; agent killed") from None
        if line is _EOF:
            self.kill()
            what = "at start" if req.get("op") == "hello" else "while running the request"
            raise RuntimeFailure(f"device {self._name!r}: agent exited {what}{self._tail()}")
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
        if self._pipe is not None:
            self._pipe.kill()
            self._pipe = None

    def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
