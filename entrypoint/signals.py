"""The signals PID 1 handles, by name. `__main__` blocks them on its first lines, before its imports
(about 200 ms), so that one sent during start-up stays pending until the supervisor acts on it:
SIGHUP's default action would even end PID 1."""

import signal

HANDLED = {
    signal.SIGTERM: "term",
    signal.SIGINT: "int",
    signal.SIGCHLD: "chld",
    signal.SIGHUP: "hup",
}
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
BLOCKED_AT_START = {*STOP_SIGNALS, signal.SIGHUP}
