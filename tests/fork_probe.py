"""A command for tests/test_forks.py, run by `entrypoint.forks.spawn` as it runs distributed's CLIs:
it writes down what it finds as it starts, then exits 3 (or waits to be signalled)."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import time
from pathlib import Path

import click
import dask.config

from entrypoint.signals import HANDLED


@click.command()
@click.argument("out")
@click.option("--wait", is_flag=True, help="sleep until signalled instead of exiting 3")
def main(out: str, wait: bool) -> None:
    handler = logging.getLogger("distributed").handlers[0]
    assert handler.formatter is not None
    facts = {
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "default_handlers": all(signal.getsignal(s) == signal.SIG_DFL for s in HANDLED),
        "environ": dict(os.environ),
        "config": dask.config.get("dask-tls-test.probe", None),
        "gc": gc.isenabled(),
        "comm": Path("/proc/self/comm").read_text().strip(),
        "log_format": handler.formatter._fmt,
    }
    Path(out).write_text(json.dumps(facts))
    while wait:
        time.sleep(1)
    raise SystemExit(3)
