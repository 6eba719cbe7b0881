"""One interpreter's imports for the whole container. PID 1 imports distributed once (`warm_up`)
and forks the scheduler and `dask worker` from itself (`spawn`, a drop-in for `children.spawn`);
`dask worker` forks a forkserver before its event loop starts (`preload.forked_forkserver`), and
its nannies' worker processes fork from that. Nothing on the way to a ready cluster imports
distributed a second time, and every page those imports filled is shared by all the processes:
the cgroup counts it once.

A fork copies the calling thread and every byte of the process: a lock another thread held stays
held for ever, an event loop's selector and callbacks are shared with the parent. `fork` refuses
(ForkRefused) while any other thread, native ones included, or any event loop exists; the forks
here happen before any of them is made. The child starts as a spawned process would: in a
process group of its own, default signal handlers and an empty signal mask, its own environment
and dask config, distributed's logging set up afresh with its own log tag.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from entrypoint.signals import HANDLED

log = logging.getLogger("entrypoint")
# What PID 1 imports before its first fork: distributed, and what every process (the preload:
# viewer and revocation checks) or both scheduler and workers (/metrics) import as they start,
# about 20 MiB at one worker when each process held its own.
WARM_MODULES = ("distributed", "cryptography.x509", "prometheus_client")
SCHEDULER_MODULE, WORKERS_MODULE = "distributed.cli.dask_scheduler", "distributed.cli.dask_worker"
# What PID 1 imports just before it forks each: the scheduler's dashboard (bokeh), so that the
# scheduler listens as soon as it is forked, before the nannies' first try to register (no retry,
# whose backoff grows under load, delays them); what every worker process imports as it starts
# (`nanny.py`, `_run`: dask.multiprocessing's `default_initializer` reseeds numpy.random), so
# that all N share it. The scheduler is forked first: the workers' imports are off its path.
CHILD_MODULES = {
    SCHEDULER_MODULE: ("distributed.dashboard.scheduler",),
    WORKERS_MODULE: ("dask.multiprocessing", "numpy.random"),
}
COMM = {SCHEDULER_MODULE: "dask-scheduler", WORKERS_MODULE: "dask-worker"}
EXIT_CRASHED = 70  # EX_SOFTWARE: the child's own code raised


class ForkRefused(RuntimeError):
    """A fork now would copy a thread's or an event loop's state half-way."""


def fork_problem() -> str | None:
    """None when this process may fork: it has one thread (the kernel's count, so native threads,
    e.g. a BLAS pool, count too) and no asyncio event loop, running or not. Else what is wrong."""
    threads = len(list(Path("/proc/self/task").iterdir()))
    if threads > 1:
        return f"{threads} threads"
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    if loops:
        return f"an event loop exists: {loops[0]!r}"
    return None


def warm_up() -> None:
    """Import WARM_MODULES. PID 1's environment holds every DASK_* variable the children get but
    the fixed keys and the log format (cluster.child_environment), which distributed reads only as
    a server starts, and `become` anew: what it reads at import is what the children would."""
    import_modules(WARM_MODULES)


def import_modules(modules: tuple[str, ...]) -> None:
    """The gc stays off until the next fork: no collection leaves holes in the pages the forks
    will share. A module that cannot be imported is left to the child that needs it, to fail
    there as it would."""
    gc.disable()
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            log.warning("not imported before forking: %s", error)


def fork(run: Callable[[], int]) -> int:
    """Fork; the child runs `run` and exits with the code it returns (or raises), never coming
    back here. PID 1's signals are blocked across the fork until the child has the default
    handlers: one sent to the new pid at once is never queued by a copy of PID 1's handler."""
    problem = fork_problem()
    if problem:
        raise ForkRefused(f"not forking with {problem}")
    gc.freeze()  # what exists now is shared: the children's gc never touches it (no copy)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    pid = os.fork()
    if pid == 0:
        code = EXIT_CRASHED
        try:
            for signum in HANDLED:  # never the parent's handlers (PID 1's would only queue)
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            code = _child(run)
        finally:
            os._exit(code)  # whatever happened: never back into the parent's code
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    gc.enable()  # for what PID 1 makes from now on; the frozen objects stay out of its reach
    return pid


def _child(run: Callable[[], int]) -> int:
    code = EXIT_CRASHED
    try:
        code = run()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        traceback.print_exc()
    # what a normal exit of the interpreter does (multiprocessing's forked children too)
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError):  # closed, as the resource tracker does
            stream.flush()
    return code


def spawn(argv: list[str], env: dict[str, str]) -> int:
    """`children.spawn` by fork: run `argv` (`python -P -m MODULE ARGS...`, a distributed CLI) in
    a child of this process, in a process group of its own."""
    import_modules(CHILD_MODULES.get(_module_and_args(argv)[0], ()))
    pid = fork(lambda: become(argv, env))
    # here as well as in the child: whichever runs first, the group exists before PID 1 signals it
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone, or in it already
        os.setpgid(pid, pid)
    return pid


def become(argv: list[str], env: dict[str, str]) -> int:
    """In the child: turn into what `argv` would have started, and run it."""
    os.setpgid(0, 0)
    gc.enable()
    os.environ.clear()
    os.environ.update(env)
    module, args = _module_and_args(argv)
    sys.argv = [module, *args]
    _fresh_config_and_logging()
    Path("/proc/self/comm").write_text(COMM.get(module, "dask"))  # what ps and top show
    signal.pthread_sigmask(signal.SIG_SETMASK, ())  # as children.spawn leaves it
    if module == WORKERS_MODULE:
        from entrypoint.preload import forked_forkserver

        forked_forkserver.start(fork)
    command = importlib.import_module(module).main
    command.main(args=args, prog_name=module, standalone_mode=True)
    return 0


def _module_and_args(argv: list[str]) -> tuple[str, list[str]]:
    at = argv.index("-m")
    return argv[at + 1], argv[at + 2 :]


def _fresh_config_and_logging() -> None:
    """dask's config from this process's environment, and distributed's logging set up from it
    (its format carries the log tag), as a new interpreter would have them."""
    import dask.config
    from distributed.config import initialize_logging

    dask.config.refresh()
    loggers = [logging.root, *logging.root.manager.loggerDict.values()]
    for logger in loggers:
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
    initialize_logging(dask.config.config)
