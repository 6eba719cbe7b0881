"""`python -m entrypoint`: with no arguments, start the cluster (`start`); with a tool's name, run
that tool (`tools.cli`); else print the usage."""

import signal
import sys

from entrypoint.signals import BLOCKED_AT_START


def main(args: list[str]) -> int:
    if not args:
        # before the imports of `start` (about 200 ms): a signal sent while the cluster starts
        # stays pending until the supervisor handles it, instead of being lost or ending PID 1
        signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED_AT_START)
        from entrypoint import start

        return start.main()
    from entrypoint.tools import cli

    if args[0] in cli.COMMANDS:
        return cli.main(args)
    from entrypoint import start

    return start.usage(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
