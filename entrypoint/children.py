"""One process PID 1 starts: in a process group of its own, signalled, killed with its group."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger("entrypoint")
Spawn = Callable[[list[str], dict[str, str]], int]
Kill = Callable[[int, int], None]


def spawn(argv: list[str], env: dict[str, str]) -> int:
    """Start `argv` in a process group of its own with signals unblocked (the entrypoint blocks
    some across exec), so a terminal's Ctrl-C reaches only us and we decide the order."""
    return os.posix_spawn(argv[0], argv, env, setpgroup=0, setsigmask=())


class Child:
    """One process we start; `pid` is None when it is not running (never started, or reaped)."""

    def __init__(
        self, role: str, argv: list[str], env: dict[str, str], *, spawn: Spawn = spawn,
        kill: Kill = os.kill,
    ) -> None:  # fmt: skip
        self.role, self.argv, self.env = role, argv, env
        self.pid: int | None = None
        self.group: int | None = None  # stays after the child is reaped: its group may live on
        self.started_at = 0.0
        self._spawn, self._kill = spawn, kill

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, now: float) -> None:
        self.pid = self.group = self._spawn(self.argv, self.env)
        self.started_at = now
        log.info("%s[%d] started", self.role, self.pid)

    def signal(self, signum: int) -> None:
        if self.pid is not None:
            self._send(self.pid, signum)

    def kill_group(self) -> None:
        """SIGKILL whatever is left in the child's process group, its own children included."""
        if self.group is not None:
            self._send(-self.group, signal.SIGKILL)

    def _send(self, target: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._kill(target, signum)


def describe_exit(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    name = signal.Signals(-code).name
    hint = " (out of memory, or killed by hand?)" if -code == signal.SIGKILL else ""
    return f"was killed by {name}{hint}"
