"""`make bench`'s account of start-up (issue 19): ready time and idle memory at each N, ours against
the seed with the targets marked; how both grow from the smallest N to the largest; where our
critical path's time goes (the container's own log lines, stamped by Docker); and what
`import distributed` costs in our image (`python -X importtime`)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from dask.utils import format_bytes

IMPORT_RUNS = 3
TOP_IMPORTS = 5
READY_TARGET, MEMORY_TARGET, STOP_TARGET = 0.5, 0.6, 1.0  # ratio, ratio, seconds
# our log lines that mark the critical path, in order: (label, text of the first such line)
MILESTONES = (
    ("checked", "INFO entrypoint: role "),  # the checks' last line (beside PID 1's imports)
    ("scheduler forked", "entrypoint: scheduler["),
    ("scheduler listening", "Scheduler at:"),
    ("nanny registered", "Start Nanny at:"),
    ("worker registered", "Registered to:"),
)


def milestones(stamped_logs: str, started: float) -> dict[str, float]:
    """Seconds from `started` (the epoch time just before `docker run`) to each MILESTONE, from
    the text of `docker logs -t`."""
    found: dict[str, float] = {}
    lines = stamped_logs.splitlines()
    for label, text in MILESTONES:
        for line in lines:
            stamp, _, rest = line.partition(" ")
            if text in rest:
                found[f"milestone:{label}"] = _epoch(stamp) - started
                break
    return found


def _epoch(stamp: str) -> float:
    """Docker's RFC 3339 stamp with nanoseconds, e.g. 2026-12-05T08:17:16.372123456Z."""
    day, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(day + "+00:00").timestamp() + float(f"0.{fraction or 0}")


def critical_path_line(results: list[dict[str, float]]) -> str:
    """Medians of our milestones at one N, and the client's ready."""
    parts = []
    for label, _ in MILESTONES:
        values = [r[f"milestone:{label}"] for r in results if f"milestone:{label}" in r]
        if values:
            parts.append(f"{label} {statistics.median(values):.2f}")
    parts.append(f"ready (the client) {statistics.median(r['ready_s'] for r in results):.2f}")
    return ", ".join(parts)


def import_time(run_python: Callable[[list[str]], str]) -> dict[str, Any]:
    """`import distributed` under `python -X importtime` in the image, IMPORT_RUNS times:
    the median total, and the largest contributors (self time summed by top-level package)."""
    totals, by_package = [], defaultdict(list)
    for _ in range(IMPORT_RUNS):
        report = run_python(["-X", "importtime", "-c", "import distributed"])
        selfs: dict[str, float] = defaultdict(float)
        for line in report.splitlines():
            if not line.startswith("import time:") or "|" not in line:
                continue
            own, cumulative, name = (part.strip() for part in line[12:].split("|"))
            if not own.isdigit():
                continue  # the header
            selfs[name.split(".")[0]] += int(own) / 1e6
            if name == "distributed":
                totals.append(int(cumulative) / 1e6)
        for package, seconds in selfs.items():
            by_package[package].append(seconds)
    top = sorted(
        ((package, statistics.median(seconds)) for package, seconds in by_package.items()),
        key=lambda item: -item[1],
    )[:TOP_IMPORTS]
    return {"total_s": statistics.median(totals), "top": top}


def import_line(found: Mapping[str, Any]) -> str:
    top = ", ".join(f"{package} {seconds:.3f}" for package, seconds in found["top"])
    return (
        f"import distributed in our image (python -X importtime, median of {IMPORT_RUNS}): "
        f"{found['total_s']:.2f} s; largest, self time by package (s): {top}"
    )


def _median(summary: Mapping[str, Any], metric: str, image: str) -> float:
    return float(summary[metric][image]["median"])


def _ratio(summary: Mapping[str, Any], metric: str) -> float:
    return float(summary[metric]["ratio"]["median"])


def per_n_table(summary: Mapping[str, Any], workers: list[int], exit_codes: str) -> str:
    """The issue's table: per N, ready and idle memory (ours / seed = ratio), our stop, and
    whether each target is met (ratios are medians of the per-round ratios)."""
    lines = [
        f"targets: ready <= {READY_TARGET}x, idle memory <= {MEMORY_TARGET}x the seed's, "
        f"docker stop <= {STOP_TARGET:g} s with exit 0 (exit codes: {exit_codes})",
        "| N | ready (ours / seed) | idle memory (ours / seed) | stop (ours) | verdict |",
        "|---|---|---|---|---|",
    ]
    for n in workers:
        ready, memory, stop = f"ready_s/N={n}", f"idle_memory_bytes/N={n}", f"stop_s/N={n}"
        ready_ratio, memory_ratio = _ratio(summary, ready), _ratio(summary, memory)
        our_stop = _median(summary, stop, "ours")
        verdicts = [
            f"ready {_met(ready_ratio <= READY_TARGET)}",
            f"memory {_met(memory_ratio <= MEMORY_TARGET)}",
            f"stop {_met(our_stop <= STOP_TARGET)}",
        ]
        ours_memory = format_bytes(int(_median(summary, memory, "ours")))
        seed_memory = format_bytes(int(_median(summary, memory, "seed")))
        lines.append(
            f"| {n} | {_median(summary, ready, 'ours'):.2f} s / "
            f"{_median(summary, ready, 'seed'):.2f} s = {ready_ratio:.2f}x "
            f"| {ours_memory} / {seed_memory} = {memory_ratio:.2f}x "
            f"| {our_stop:.2f} s | {', '.join(verdicts)} |"
        )
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def growth_line(summary: Mapping[str, Any], workers: list[int]) -> str:
    """How ready time and idle memory grow from the smallest N to the largest, per worker."""
    low, high = min(workers), max(workers)
    parts = []
    for image in ("ours", "seed"):
        ready = [_median(summary, f"ready_s/N={n}", image) for n in (low, high)]
        memory = [_median(summary, f"idle_memory_bytes/N={n}", image) for n in (low, high)]
        extra = high - low or 1
        parts.append(
            f"{image}: ready {ready[0]:.2f} -> {ready[1]:.2f} s "
            f"({(ready[1] - ready[0]) / extra * 1000:.0f} ms per worker), idle memory "
            f"{format_bytes(int(memory[0]))} -> {format_bytes(int(memory[1]))} "
            f"({format_bytes(int((memory[1] - memory[0]) / extra))} per worker)"
        )
    return f"growth from N={low} to N={high}: " + "; ".join(parts)
