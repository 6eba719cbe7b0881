"""`python -m entrypoint`: with no arguments, start the cluster (`start`); else a tool (`cli`)."""

import signal
import sys

from entrypoint.signals import BLOCKED_AT_START

if __name__ == "__main__":
    if not sys.argv[1:]:
        # before the imports of `start` (about 200 ms): a signal sent while the cluster starts
        # stays pending until the supervisor handles it, instead of being lost or ending PID 1
        signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED_AT_START)
    from entrypoint.start import main

    sys.exit(main(sys.argv))
