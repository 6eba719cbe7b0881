"""`make bench`: this image against a faithful rebuild of the seed's setup, side by side.

Each round builds both images cold, rebuilds both after a code-only change, then for each N starts
each image, times it to ready (a TLS client sees N workers and one task returns), reads its idle
memory and process count, and times `docker stop`. Rounds alternate which image goes first. Prints a
table (medians, min-max, per-round ratios to the seed) and writes it with the machine's description
as JSON, plus a chart (PNG). Then, for this image only: the bytes of the default and the slim
build, a P2P shuffle over TLS against the same shuffle over plain TCP, the stop of a worker
container holding 60 MB and 600 MB of results, drained against the stop without the drain, and
the autoscaler's rehearsal (tests/gce_rehearsal.py: a group of 1 to 4 worker VMs as containers):
from a burst to the first added worker registered, from idle to the group back at 1 VM.

`--only sizes shuffle drain autoscale` runs just those last measurements (minutes, no cold builds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.datasets
import numpy as np
from dask.utils import format_bytes, parse_bytes
from distributed import Client, wait
from distributed.security import Security

from bench import startup
from entrypoint.tools.certs import Issued, blogs_certificate
from tests import gce_rehearsal

ROOT = Path(__file__).resolve().parents[1]
DOCKER = os.environ.get("DOCKER") or (
    "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
)
OURS, SEED = "ours", "seed"
# the host's Python patch release differs from the images'; not what is measured
warnings.filterwarnings("ignore", message="Mismatched versions found")
IDLE_SETTLE = 3.0  # seconds after ready before memory is read
TRANSFER = 256 << 20  # bytes per throughput trial
# a P2P shuffle of 46 days of 1 s rows (46 partitions); one warm-up run, then SHUFFLE_RUNS timed
SHUFFLE_DAYS = ("2000-01-01", "2000-02-16")
SHUFFLE_ROWS = 46 * 86_400
SHUFFLE_RUNS = 5
SLIM_GROUPS = "cluster"  # `make build GROUPS=cluster`
# the drain on stop: a worker container holding this many results of RESULT_BYTES stops (median
# of DRAIN_RUNS), with the drain and without it (DRAIN_TIMEOUT=0: the stop as it was)
DRAIN_RESULTS = {"60 MB": 30, "600 MB": 300}
RESULT_BYTES = 2 * 10**6
DRAIN_RUNS = 3
DRAIN_BUDGET = "120"  # seconds: enough to measure how long moving everything takes
EXTRAS = ("sizes", "shuffle", "drain", "autoscale")
AUTOSCALE_RUNS = 3
TARGETS = {  # metric: (largest allowed ratio to the seed, or None), absolute limit, unit
    "ready_s": (startup.READY_TARGET, None),
    "stop_s": (None, startup.STOP_TARGET),
    "idle_memory_bytes": (startup.MEMORY_TARGET, None),
    "bytes_added": (0.6, None),
    "rebuild_s": (None, 10.0),
}

Samples = dict[str, dict[str, list[float]]]  # metric[/N] -> image -> one value per round


@dataclass(frozen=True)
class Images:
    base: str
    tags: dict[str, str]
    dockerfiles: dict[str, str]
    build_args: list[str]


def docker(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    result = subprocess.run(
        [DOCKER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise DockerFailed(f"docker {args[0]} exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout.strip()


class DockerFailed(Exception):
    pass


def build(images: Images, which: str, context: Path, cold: bool) -> float:
    """Seconds for one build; a failed one (a download cut short, say) is told and tried once
    more, from the start and timed alone."""
    try:
        return timed_build(images, which, context, cold)
    except DockerFailed as failure:
        print(f"  {which} build failed, trying once more: {failure}", flush=True)
        return timed_build(images, which, context, cold)


def timed_build(images: Images, which: str, context: Path, cold: bool) -> float:
    if cold:
        docker("builder", "prune", "-af")
    dockerfile = str(context / images.dockerfiles[which])
    started = time.perf_counter()
    docker(
        "build", "-q", *images.build_args, "-f", dockerfile, "-t", images.tags[which], str(context),
        env={"DOCKER_BUILDKIT": "1"},
    )  # fmt: skip
    return time.perf_counter() - started


def measure_builds(images: Images, order: list[str], base_size: int, samples: Samples) -> None:
    """One round of cold builds, then rebuilds after a code-only change, of each image."""
    context = code_change_context()
    for which in order:  # a cold build prunes the cache: each rebuild follows its own
        samples["cold_build_s"][which].append(build(images, which, ROOT, cold=True))
        samples["rebuild_s"][which].append(build(images, which, context, cold=False))
        size = int(docker("image", "inspect", "-f", "{{.Size}}", images.tags[which]))
        samples["bytes_added"][which].append(size - base_size)
    shutil.rmtree(context)


def code_change_context() -> Path:
    """A copy of the build context with one line of code changed in each image."""
    context = Path(tempfile.mkdtemp(prefix="bench-context-"))
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()  # everything a build may COPY, nothing of the working tree's caches
    for name in tracked:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, context / name)
    stamp = f"\n# rebuilt {time.time_ns()}\n"
    with (context / "entrypoint" / "health.py").open("a") as code:
        code.write(stamp)
    with (context / "bench" / "seed" / "dask-entrypoint.sh").open("a") as code:
        code.write(stamp)
    return context


def run_once(
    tag: str, env: dict[str, str], workers: int, security: Security, *, milestones: bool = False
) -> dict[str, float]:
    """Start, time to ready, read idle memory and processes, time the stop; always remove. With
    `milestones`, also when our log lines that mark the critical path came (startup.MILESTONES)."""
    name = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    wall_started = time.time()
    started = time.perf_counter()
    docker("run", "-d", "--name", name, *[a for k in env for a in ("-e", k)], tag, env=env)
    try:
        address = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name)
        with Client(f"tls://{address}:8786", security=security, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=60)
            assert client.submit(int.__add__, 1, 1, pure=False).result(timeout=60) == 2
            ready = time.perf_counter() - started
        time.sleep(IDLE_SETTLE)
        memory = parse_bytes(
            docker("stats", "--no-stream", "--format", "{{.MemUsage}}", name).split("/")[0]
        )
        processes = len(docker("top", name, "-eo", "pid").splitlines()) - 1
        marks = startup.milestones(stamped_logs(name), wall_started) if milestones else {}
        stopping = time.perf_counter()
        docker("stop", name, timeout=60)
        stop = time.perf_counter() - stopping
        exit_code = int(docker("inspect", "-f", "{{.State.ExitCode}}", name))
    finally:
        docker("rm", "-f", "-v", name)  # -v: the anonymous /scratch volume too
    return {
        "ready_s": ready,
        "idle_memory_bytes": memory,
        "processes": processes,
        "stop_s": stop,
        "exit_code": exit_code,
        **marks,
    }


def stamped_logs(name: str) -> str:
    """`docker logs -t`, both streams (our processes log to stderr)."""
    result = subprocess.run(
        [DOCKER, "logs", "-t", name], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout + result.stderr


def run_python(tag: str, args: list[str]) -> str:
    """What the image's Python prints to stderr (where -X importtime writes) running `args`."""
    result = subprocess.run(
        [DOCKER, "run", "--rm", "--entrypoint", "/opt/venv/bin/python", tag, *args],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return result.stderr


@contextlib.contextmanager
def cluster(
    tag: str, env: dict[str, str], security: Security | None, workers: int
) -> Iterator[Client]:
    """A client of a cluster of `workers` started from `tag`: over TLS through the entrypoint,
    else (security None) over plain TCP from the same image, the processes started by hand."""
    name = f"bench-cluster-{os.getpid()}-{time.monotonic_ns()}"
    plain = ["--entrypoint", "/bin/sh"] if security is None else []
    command = (
        ["-c", f"dask scheduler & exec dask worker --nworkers {workers} --nthreads 1 "
               "--no-dashboard tcp://127.0.0.1:8786"]
        if security is None
        else []
    )  # fmt: skip
    env = {**env, "NUM_WORKERS": str(workers), "THREADS_PER_WORKER": "1"}
    docker("run", "-d", "--name", name, *[a for k in env for a in ("-e", k)], *plain, tag,
           *command, env=env)  # fmt: skip
    try:
        address = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name)
        protocol = "tcp" if security is None else "tls"
        with Client(f"{protocol}://{address}:8786", security=security, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=60)
            yield client
    finally:
        docker("rm", "-f", "-v", name)  # -v: the anonymous /scratch volume too


def throughput(tag: str, env: dict[str, str], security: Security | None) -> float:
    """Bytes per second of a scatter + gather round trip, one worker."""
    with cluster(tag, env, security, workers=1) as client:
        data = np.random.default_rng(0).integers(0, 256, TRANSFER, dtype=np.uint8)
        trials = []
        for _ in range(3):
            started = time.perf_counter()
            future = client.scatter(data)
            back = future.result()
            trials.append(2 * TRANSFER / (time.perf_counter() - started))
            assert np.array_equal(back, data)
            del future
    return statistics.median(trials)


def shuffle_seconds(tag: str, env: dict[str, str], security: Security) -> dict[str, list[float]]:
    """Seconds of a P2P shuffle of a persisted frame, over TLS and over plain TCP: two clusters
    of 2 workers from `tag`, up side by side, the runs alternating between them so that the
    machine's changing load weighs on both alike. One warm-up each, then SHUFFLE_RUNS timed."""
    with contextlib.ExitStack() as stack:
        clients = {
            protocol: stack.enter_context(cluster(tag, env, secure, workers=2))
            for protocol, secure in (("tls", security), ("tcp", None))
        }
        frames, held = {}, {}
        for protocol, client in clients.items():
            start, end = SHUFFLE_DAYS
            frames[protocol] = client.persist(
                dask.datasets.timeseries(start=start, end=end, freq="1s", seed=0)
            )
            wait(frames[protocol])
            held[protocol] = client.run_on_scheduler(task_count)
        runs: dict[str, list[float]] = {protocol: [] for protocol in clients}
        for run in range(1 + SHUFFLE_RUNS):
            for protocol in sorted(clients, reverse=run % 2 == 1):
                client = clients[protocol]
                started = time.perf_counter()
                shuffled = client.persist(frames[protocol].shuffle("id", shuffle_method="p2p"))
                wait(shuffled)
                runs[protocol].append(time.perf_counter() - started)
                with client.as_current():  # two clients here: len() must ask this one
                    assert len(shuffled) == SHUFFLE_ROWS
                del shuffled
                # the next run has the same keys: wait until the scheduler forgot these, or it
                # would find them in memory and take no time at all
                wait_for_tasks(client, held[protocol], timeout=60)
    return {protocol: seconds[1:] for protocol, seconds in runs.items()}


def task_count(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


def wait_for_tasks(client: Client, count: int, timeout: float) -> None:
    """Until the scheduler holds `count` tasks."""
    deadline = time.monotonic() + timeout
    while client.run_on_scheduler(task_count) != count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the scheduler still holds other than {count} tasks")
        time.sleep(0.1)


@contextlib.contextmanager
def drain_network(tag: str, env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """A Docker network with a scheduler container on it: (network, scheduler's address)."""
    name = f"bench-drain-{os.getpid()}-{time.monotonic_ns()}"
    docker("network", "create", name)
    try:
        docker("run", "-d", "--name", f"{name}-scheduler", "--network", name, "--network-alias",
               "scheduler", *[a for k in env for a in ("-e", k)], "-e", "DASK_ROLE=scheduler",
               tag, env=env)  # fmt: skip
        yield name, f"tls://{ip_on(name, f'{name}-scheduler')}:8786"
    finally:
        docker("rm", "-f", "-v", f"{name}-scheduler")
        docker("network", "rm", name)


def ip_on(network: str, container: str) -> str:
    template = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
    return docker("inspect", "-f", template, container)


def worker_container(tag: str, env: dict[str, str], network: str, drain: str) -> str:
    name = f"{network}-worker-{time.monotonic_ns()}"
    env = {**env, "DASK_ROLE": "worker", "DASK_SCHEDULER_ADDRESS": "tls://scheduler:8786",
           "NUM_WORKERS": "1", "DRAIN_TIMEOUT": drain}  # fmt: skip
    docker("run", "-d", "--name", name, "--network", network,
           *[a for k in env for a in ("-e", k)], tag, env=env)  # fmt: skip
    return name


def drain_once(
    tag: str, env: dict[str, str], security: Security, network: tuple[str, str], results: int,
    drain: str,
) -> tuple[float, int]:  # fmt: skip
    """`results` results of RESULT_BYTES of random bytes on a worker container, which stops with
    another one up: (seconds of its `docker stop`, how many results were lost: computed again,
    their bytes changed)."""
    leaving, staying = worker_container(tag, env, network[0], drain), ""
    try:
        with Client(network[1], security=security, timeout="60s") as client:
            client.wait_for_workers(1, timeout=120)  # all results on it: the other starts after
            futures = [client.submit(os.urandom, RESULT_BYTES, pure=False) for _ in range(results)]
            before = digests(client, futures)  # alone: no copy lands on the other one
            staying = worker_container(tag, env, network[0], drain)
            client.wait_for_workers(2, timeout=120)
            [there] = {worker for held in client.who_has(futures).values() for worker in held}
            assert f"//{ip_on(network[0], leaving)}:" in there
            started = time.perf_counter()
            docker("stop", "-t", "300", leaving, timeout=600)
            seconds = time.perf_counter() - started
            wait(futures, timeout=300)  # those lost are computed again
            after = digests(client, futures)
    finally:
        docker("rm", "-f", "-v", *(name for name in (leaving, staying) if name))
    return seconds, sum(1 for key in before if before[key] != after[key])


def digests(client: Client, futures: list[Any]) -> dict[str, int]:
    """crc32 of each result, computed where it is held (nothing crosses to the client)."""

    def crc(data: bytes) -> int:  # nested: sent by value, as cloudpickle does
        import zlib

        return zlib.crc32(data)

    sums = client.gather([client.submit(crc, future, pure=False) for future in futures])
    return {future.key: value for future, value in zip(futures, sums, strict=True)}


def drain_seconds(
    tag: str, env: dict[str, str], security: Security
) -> tuple[dict[str, Any], list[str]]:
    """The stop of a worker container holding each of DRAIN_RESULTS, DRAIN_RUNS times, with the
    drain and without (DRAIN_TIMEOUT=0); the modes alternate run by run."""
    found: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    lost: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    with drain_network(tag, env) as network:
        for label, results in DRAIN_RESULTS.items():
            for run in range(DRAIN_RUNS):
                for mode in sorted(("drain", "none"), reverse=run % 2 == 1):
                    budget = DRAIN_BUDGET if mode == "drain" else "0"
                    seconds, gone = drain_once(tag, env, security, network, results, budget)
                    print(f"  {label} {mode}: {seconds:.2f} s, {gone} lost", flush=True)
                    found[label][mode].append(seconds)
                    lost[label][mode].append(gone)
    lines = [
        f"stop of a worker container holding {label} ({results} results of 2 MB), median of "
        f"{DRAIN_RUNS} [min-max]: drained {spread(found[label]['drain'])} s, "
        f"{max(lost[label]['drain'])} lost; without the drain {spread(found[label]['none'])} s, "
        f"{min(lost[label]['none'])} lost"
        for label, results in DRAIN_RESULTS.items()
    ]
    return {"seconds": found, "lost": lost}, lines


def autoscale_seconds(tag: str) -> tuple[dict[str, Any], list[str]]:
    """The autoscaler's rehearsal, AUTOSCALE_RUNS times, without faults: seconds from the burst
    to the first added VM's worker registered, from a VM's `docker run` to its worker registered
    (the join), from the burst's last result to the group back at its minimum; and whether every
    persisted result was kept."""
    if os.geteuid() != 0:
        return {}, ["autoscaling: not measured (the rehearsal runs the VMs' fetch script as root)"]
    found: dict[str, list[float]] = defaultdict(list)
    kept = []
    for run in range(AUTOSCALE_RUNS):
        with (
            tempfile.TemporaryDirectory() as directory,
            gce_rehearsal.vm_environment(Path(directory)) as env,
        ):
            seen = gce_rehearsal.rehearse_autoscaling(tag, Path(directory), env, faults={})
        found["burst_to_first_added_s"].append(seen.burst_to_first_added)
        found["join_s"] += seen.joins
        found["idle_to_minimum_s"].append(seen.idle_to_minimum)
        kept.append(sum(a == b for a, b in zip(seen.before, seen.after, strict=True)))
        print(f"  autoscale run {run + 1}: burst to the first added worker "
              f"{seen.burst_to_first_added:.1f} s, joins {[round(j, 1) for j in seen.joins]} s, "
              f"idle to the minimum {seen.idle_to_minimum:.1f} s, {kept[-1]} of "
              f"{len(seen.before)} results kept", flush=True)  # fmt: skip
    damping = ", ".join(
        f"{k.lower().replace('_', '-')} {v} s" for k, v in gce_rehearsal.DAMPING.items()
    )
    line = (
        f"autoscaling rehearsal ({gce_rehearsal.MINIMUM} to {gce_rehearsal.MAXIMUM} worker VMs as "
        f"containers, {gce_rehearsal.BURST} one-second tasks; damping {damping}), median of "
        f"{AUTOSCALE_RUNS} [min-max]: burst to the first added worker registered "
        f"{spread(found['burst_to_first_added_s'])} s; an added VM's docker run to its worker "
        f"registered {spread(found['join_s'])} s; idle to the group back at "
        f"{gce_rehearsal.MINIMUM} VM {spread(found['idle_to_minimum_s'])} s, results kept "
        f"{min(kept)} of {gce_rehearsal.PERSISTED}"
    )
    return {**found, "kept": kept}, [line]


def image_bytes(tag: str) -> int:
    return int(docker("image", "inspect", "-f", "{{.Size}}", tag))


def extras(
    which: tuple[str, ...], images: Images, env: dict[str, str], security: Security
) -> tuple[dict[str, object], list[str]]:
    """This image's sizes (default and slim build), its P2P shuffle over TLS and TCP, and the
    drain on stop: the numbers for JSON, and the lines for the report. The default image must be
    built."""
    found: dict[str, object] = {}
    lines = []
    if "sizes" in which:
        slim = f"{images.tags[OURS]}-slim"
        args = ["--build-arg", f"DEPENDENCY_GROUPS={SLIM_GROUPS}", *images.build_args]
        docker("build", "-q", *args, "-t", slim, str(ROOT), env={"DOCKER_BUILDKIT": "1"})
        base = image_bytes(images.base)
        sizes = {"default": image_bytes(images.tags[OURS]), "slim": image_bytes(slim)}
        found["image_bytes"] = {**sizes, "base": base}
        lines.append(
            "image bytes: " + ", ".join(
                f"{build} {format_bytes(size)} ({format_bytes(size - base)} over the base)"
                for build, size in sizes.items()
            )
        )  # fmt: skip
    if "shuffle" in which:
        seconds = shuffle_seconds(images.tags[OURS], env, security)
        tls, tcp = seconds["tls"], seconds["tcp"]
        found["shuffle_s"] = seconds
        ratio = statistics.median(tls) / statistics.median(tcp)
        lines.append(
            f"P2P shuffle of {SHUFFLE_ROWS:,} rows (dask.datasets.timeseries), 2 workers, "
            f"median of {SHUFFLE_RUNS} [min-max]: TLS {spread(tls)} s, plain TCP {spread(tcp)} s "
            f"(TLS/TCP {ratio:.2f})"
        )
    if "drain" in which:
        found["drain_stop_s"], drained = drain_seconds(images.tags[OURS], env, security)
        lines += drained
    if "autoscale" in which:
        found["autoscale"], scaled = autoscale_seconds(images.tags[OURS])
        lines += scaled
    return found, lines


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def seed_security(seed: Issued) -> Security:
    """The seed's client code: its one certificate as CA and client certificate."""
    directory = Path(tempfile.mkdtemp())
    cert, key = directory / "seed.pem", directory / "seed-key.pem"
    for path, data in ((cert, seed.cert_pem), (key, seed.key_pem)):
        path.write_bytes(data)
        path.chmod(0o600)
    return Security(
        tls_ca_file=str(cert),
        tls_client_cert=str(cert),
        tls_client_key=str(key),
        require_encryption=True,
    )


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": format_bytes(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")),
        "kernel": platform.release(),
        "docker": docker("version", "-f", "{{.Server.Version}}"),
        "python": platform.python_version(),
    }


def summarize(samples: Samples) -> dict[str, dict[str, object]]:
    summary: dict[str, dict[str, object]] = {}
    for metric, by_image in samples.items():
        ours, seed = by_image[OURS], by_image[SEED]
        ratios = [a / b for a, b in zip(ours, seed, strict=True) if b]
        summary[metric] = {
            "ours": {
                "median": statistics.median(ours),
                "min": min(ours),
                "max": max(ours),
                "values": ours,
            },
            "seed": {
                "median": statistics.median(seed),
                "min": min(seed),
                "max": max(seed),
                "values": seed,
            },
            "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
            if ratios
            else None,
            "verdict": verdict(
                metric, statistics.median(ours), statistics.median(ratios) if ratios else None
            ),
        }
    return summary


def verdict(metric: str, ours: float, ratio: float | None) -> str:
    base = metric.split("/")[0]
    if base not in TARGETS:
        return ""
    max_ratio, limit = TARGETS[base]
    if max_ratio is not None and ratio is not None:
        return f"{'met' if ratio <= max_ratio else 'MISSED'} (<= {max_ratio}x)"
    if limit is not None:
        return f"{'met' if ours <= limit else 'MISSED'} (<= {limit:g} s)"
    return ""


def shown(metric: str, value: float) -> str:
    return format_bytes(int(value)) if "bytes" in metric else f"{value:.2f}"


def span(metric: str, stats: dict[str, float]) -> str:
    low, high = shown(metric, stats["min"]), shown(metric, stats["max"])
    return f"{shown(metric, stats['median'])} [{low}-{high}]"


def table(summary: dict[str, dict[str, object]]) -> str:
    columns = ("ours median [min-max]", "seed median [min-max]", "ratio [min-max]")
    lines = [f"{'metric':<24}{columns[0]:<36}{columns[1]:<36}{columns[2]:<20}target"]
    for metric, row in summary.items():
        ours, seed, r = row[OURS], row[SEED], row["ratio"]
        assert isinstance(ours, dict) and isinstance(seed, dict)
        ratio = f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]" if isinstance(r, dict) else "-"
        cells = f"{span(metric, ours):<36}{span(metric, seed):<36}{ratio:<20}"
        lines.append(f"{metric:<24}{cells}{row['verdict']}")
    return "\n".join(lines)


def chart(
    summary: dict[str, dict[str, object]], workers: list[int], path: Path, about: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("ready_s", "ready after docker run (s)"),
        ("stop_s", "docker stop (s)"),
        ("idle_memory_bytes", "idle memory (MiB)"),
    ]
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for axis, (metric, title) in zip(axes, panels, strict=False):
        for image, colour in ((OURS, "tab:blue"), (SEED, "tab:grey")):
            medians = [summary[f"{metric}/N={n}"][image]["median"] for n in workers]  # type: ignore[index]
            scale = (1 << 20) if "bytes" in metric else 1
            axis.plot(workers, [m / scale for m in medians], "o-", color=colour, label=image)
        axis.set_title(title)
        axis.set_ylim(bottom=0)
        axis.set_xlabel("workers (N)")
        axis.set_xscale("log", base=2)  # 1, 2, 4, 16: the growth per worker is the line's slope
        axis.set_xticks(workers, [str(n) for n in workers])
        axis.legend()
    if "bytes_added" in summary:
        sizes = [summary["bytes_added"][image]["median"] / (1 << 20) for image in (OURS, SEED)]  # type: ignore[index]
        axes[3].bar([OURS, SEED], sizes, color=["tab:blue", "tab:grey"])
        axes[3].set_title("bytes added over the base (MiB)")
    figure.suptitle(f"dask-tls vs the seed's setup, medians; {about}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 16])
    parser.add_argument(
        "--warm-builds",
        action="store_true",
        help="build each image once from the cache, no cold builds (a short run on a shared "
        "machine: a cold build prunes the engine's whole build cache)",
    )
    parser.add_argument("--base", help="the base image both are built on (required to measure)")
    parser.add_argument(
        "--build-option",
        action="append",
        default=[],
        dest="build_options",
        help="one more `docker build` option for both images, e.g. --build-option=--secret=...",
    )
    parser.add_argument(
        "--skip-extras", action="store_true", help="no transfer, shuffle or image-size runs"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--tag", default="dask-tls:bench", help="our image's tag (and TAG-slim)")
    parser.add_argument(
        "--only", nargs="+", choices=EXTRAS, help="measure only these, on warm builds; print them"
    )
    parser.add_argument("--redraw", type=Path, help="only redo the table and chart from a JSON")
    args = parser.parse_args()
    if args.redraw:
        saved = json.loads(args.redraw.read_text())
        host = saved["machine"]
        about = f"{host['cores']} cores, {host['cpu']}, {saved['rounds']} rounds"
        print(table(saved["summary"]))
        chart(saved["summary"], saved["workers"], args.redraw.with_suffix(".png"), about)
        return

    if not args.base:
        parser.error("--base is required")
    images = Images(
        base=args.base,
        tags={OURS: args.tag, SEED: f"{args.tag}-seed"},  # both yours: the engine is shared
        dockerfiles={OURS: "Dockerfile", SEED: "bench/seed/Dockerfile"},
        build_args=["--build-arg", f"BASE_IMAGE={args.base}", *args.build_options],
    )
    # the blog's single self-signed certificate: CA, server and client at once
    seed = blogs_certificate("seed")
    seed_env = {
        "DASK_CLUSTER_CERT": seed.cert_pem.decode(),
        "DASK_CLUSTER_KEY": seed.key_pem.decode(),
    }
    security = seed_security(seed)
    if args.only:
        build(images, OURS, ROOT, cold=False)
        print("\n".join(extras(tuple(args.only), images, seed_env, security)[1]))
        return
    base_size = int(docker("image", "inspect", "-f", "{{.Size}}", args.base))

    samples: Samples = defaultdict(lambda: defaultdict(list))
    exit_codes: dict[str, set[int]] = defaultdict(set)
    processes: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    ours_runs: dict[int, list[dict[str, float]]] = defaultdict(list)
    for round_number in range(args.rounds):
        order = [OURS, SEED] if round_number % 2 == 0 else [SEED, OURS]
        print(f"round {round_number + 1}/{args.rounds}: building", flush=True)
        if args.warm_builds:
            for which in order if round_number == 0 else []:
                build(images, which, ROOT, cold=False)
        else:
            measure_builds(images, order, base_size, samples)
        for workers in args.workers:
            env = {
                **seed_env,
                "NUM_WORKERS": str(workers),
                "THREADS_PER_WORKER": "1",
                "MEMORY_PER_WORKER": "1",
            }
            for which in order:
                result = run_once(
                    images.tags[which], env, workers, security, milestones=which == OURS
                )
                print(f"  N={workers} {which}: {result}", flush=True)
                if which == OURS:
                    ours_runs[workers].append(result)
                for metric in ("ready_s", "stop_s", "idle_memory_bytes"):
                    samples[f"{metric}/N={workers}"][which].append(result[metric])
                exit_codes[which].add(int(result["exit_code"]))
                processes[which][workers].append(int(result["processes"]))

    measured: dict[str, object] = {}
    lines: list[str] = []
    tls = tcp = 0.0
    if not args.skip_extras:
        tls = throughput(images.tags[OURS], seed_env, security)
        tcp = throughput(images.tags[OURS], seed_env, None)
        measured, lines = extras(EXTRAS, images, seed_env, security)
    imports = startup.import_time(lambda python_args: run_python(images.tags[OURS], python_args))
    measured["import_distributed"] = imports
    summary = summarize(samples)
    host = machine()
    about = f"{host['cores']} cores, {host['cpu']}, {args.rounds} rounds"
    report = table(summary)
    counts = ", ".join(
        f"{n}: {statistics.median(processes[OURS][n]):g} / "
        f"{statistics.median(processes[SEED][n]):g}"
        for n in args.workers
    )
    codes = f"ours {sorted(exit_codes[OURS])}, seed {sorted(exit_codes[SEED])}"
    extra = "\n".join(
        [
            f"docker stop exit codes: {codes}",
            f"processes (N: ours / seed): {counts}",
            startup.per_n_table(summary, args.workers, codes),
            startup.growth_line(summary, args.workers),
            *(
                f"our critical path at N={n}, median s after docker run: "
                + startup.critical_path_line(ours_runs[n])
                for n in args.workers
            ),
            startup.import_line(imports),
            *(
                []
                if args.skip_extras
                else [
                    f"bulk transfer, our image: TLS {format_bytes(int(tls))}/s, "
                    f"plain TCP {format_bytes(int(tcp))}/s (TLS/TCP {tls / tcp:.2f})"
                ]
            ),
            *lines,
        ]
    )
    print(report + "\n" + extra)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.txt").write_text(f"{report}\n{extra}\n{about}\n")
    (args.out / "bench.json").write_text(
        json.dumps(
            {
                "machine": host,
                "rounds": args.rounds,
                "workers": args.workers,
                "summary": summary,
                "exit_codes": {k: sorted(v) for k, v in exit_codes.items()},
                "processes": {
                    k: {str(n): v for n, v in by_n.items()} for k, by_n in processes.items()
                },
                "throughput_bytes_per_s": {"tls": tls, "tcp": tcp},
                **measured,
            },
            indent=1,
        )
    )
    chart(summary, args.workers, args.out / "bench.png", about)


if __name__ == "__main__":
    main()
