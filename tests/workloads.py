"""Work a user brings, run from a client environment made by `make client`:

    CLIENT_VENV/bin/python -m tests.workloads tls://HOST:PORT WORKLOAD [ARGUMENT ...]

The environment's own dask config (written by `make client`) supplies the certificates: the
client is a plain `Client(address)`. Prints one JSON object; the tests judge it. Run as __main__,
so cloudpickle ships these functions to the workers by value (the image has no `tests`)."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, wait

Result = dict[str, Any]
ROWS = 200_000


def frame(rows: int = ROWS, keys: int = 97) -> Any:
    import pandas as pd

    values = np.arange(rows)
    return pd.DataFrame({"key": values % keys, "value": values, "text": values.astype(str)})


def same(got: Any, expected: Any, order: str = "value") -> bool:
    """Equal rows, whatever the order and the string dtype (dask reads strings as pyarrow's)."""
    import pandas as pd

    try:
        pd.testing.assert_frame_equal(
            got.sort_values(order).reset_index(drop=True),
            expected.sort_values(order).reset_index(drop=True),
            check_dtype=False,
        )
    except AssertionError:
        return False
    return True


def versions(client: Client, args: list[str]) -> Result:
    """What `get_versions(check=True)` warns about, and the dashboard link."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found: Any = client.get_versions(check=True)
    return {
        "warnings": [str(warning.message) for warning in caught],
        "python": {
            "client": found["client"]["host"]["python"],
            "scheduler": found["scheduler"]["host"]["python"],
        },
        "dashboard_link": client.dashboard_link,
    }


def groupby(client: Client, args: list[str]) -> Result:
    import dask.dataframe as dd

    local = frame()
    got = dd.from_pandas(local, npartitions=8).groupby("key").value.sum().compute()
    expected = local.groupby("key").value.sum()
    return {"equal": bool(got.sort_index().equals(expected)), "groups": len(got)}


def shuffle(client: Client, args: list[str]) -> Result:
    """A P2P shuffle: every key ends up in exactly one output partition, no row lost; and the
    kinds of tasks that ran (P2P's are shuffle-transfer, shuffle-barrier, p2pshuffle)."""
    import dask.dataframe as dd
    from dask.utils import key_split
    from distributed import get_task_stream

    shuffled = dd.from_pandas(frame(), npartitions=8).shuffle("key", shuffle_method="p2p")
    with get_task_stream(client) as tasks:
        partitions = client.gather(client.compute(shuffled.to_delayed()))
    key_sets = [set(part.key) for part in partitions]
    return {
        "rows": sum(len(part) for part in partitions),
        "keys_in_one_partition": sum(map(len, key_sets)) == len(set().union(*key_sets)),
        "task_kinds": sorted({key_split(task["key"]) for task in tasks.data}),
    }


def merge(client: Client, args: list[str]) -> Result:
    import dask.dataframe as dd

    left, right = frame(), frame(ROWS // 4).rename(columns={"value": "other"})
    right = right.drop_duplicates("key")
    got = dd.from_pandas(left, npartitions=6).merge(dd.from_pandas(right, npartitions=3), on="key")
    expected = left.merge(right, on="key")
    return {"equal": same(got.compute(), expected), "rows": len(expected)}


def parquet(client: Client, args: list[str]) -> Result:
    """Write with the workers into `args[0]` (a container path), read it back, compare."""
    import dask.dataframe as dd

    local = frame()
    dd.from_pandas(local, npartitions=4).to_parquet(args[0])
    back = dd.read_parquet(args[0]).compute()
    return {"equal": same(back[local.columns], local), "rows": len(back)}


def bag_to_dataframe(client: Client, args: list[str]) -> Result:
    import dask.bag as db

    records = [{"n": i, "name": f"item-{i}"} for i in range(10_000)]
    frame = db.from_sequence(records, npartitions=4).to_dataframe()
    return {"sum": int(frame.n.sum().compute()), "columns": list(frame.columns)}


def worker_addresses(client: Client, args: list[str]) -> Result:
    return {"workers": sorted(client.scheduler_info()["workers"])}


def spill(client: Client, args: list[str]) -> Result:
    """Persist `args[0]` bytes of random numbers in `args[1]`-byte chunks, more than the workers'
    memory; measure what the workers spilled and where; then reduce. The chunks' digests, made
    from the persisted (spilled) data, must equal those made streaming (nothing held)."""
    import dask.array as da

    total, chunk = int(args[0]), int(args[1])
    numbers = da.random.default_rng(0).random(total // 8, chunks=chunk // 8)
    expected = client.gather(client.compute(digests(numbers)))
    persisted = numbers.persist()
    wait(persisted, timeout=600)
    on_disk = client.run(spilled_bytes)
    got = client.gather(client.compute(digests(persisted)))
    mean = float(persisted.mean().compute())
    return {
        "equal": got == expected,
        "chunks": len(got),
        "mean": mean,
        "spilled": on_disk,
        "memory_limits": [w["memory_limit"] for w in client.scheduler_info()["workers"].values()],
    }


def digests(array: Any) -> list[Any]:
    import hashlib

    def digest(block: Any) -> str:
        return hashlib.sha256(np.ascontiguousarray(block).data).hexdigest()

    from dask.delayed import delayed

    return [delayed(digest)(block) for block in array.to_delayed().ravel()]


def spilled_bytes(dask_worker: Any) -> tuple[str, int]:
    """The worker's scratch directory and the bytes of the files under it."""
    directory = dask_worker.local_directory
    size = sum(path.stat().st_size for path in Path(directory).rglob("*") if path.is_file())
    return directory, size


def imports(client: Client, args: list[str]) -> Result:
    """Import each module in `args` here and inside a task on the cluster; their files."""

    def where(names: list[str]) -> dict[str, str]:
        import importlib

        return {name: str(importlib.import_module(name).__file__) for name in names}

    return {"client": where(args), "cluster": client.submit(where, args, pure=False).result()}


def arrays_and_futures(client: Client, args: list[str]) -> Result:
    import dask.array as da

    total = da.arange(1_000_000, chunks=100_000).sum().compute()
    futures = client.map(lambda x: x * 2, range(100))
    return {"array_sum": int(total), "futures_sum": sum(client.gather(futures))}


def dataframe_error(client: Client, args: list[str]) -> Result:
    """What a dataframe graph does against a cluster that may lack pandas."""
    import dask.dataframe as dd

    try:
        value = dd.from_dict({"a": list(range(1000))}, npartitions=4).a.sum().compute()
    except RuntimeError as error:  # the scheduler's refusal to unpickle it; others fail the run
        return {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
    return {"value": int(value)}


WORKLOADS: dict[str, Callable[[Client, list[str]], Result]] = {
    function.__name__: function
    for function in (versions, groupby, shuffle, merge, parquet, bag_to_dataframe,
                     worker_addresses, spill, imports, arrays_and_futures, dataframe_error)
}  # fmt: skip


def main(argv: list[str]) -> int:
    address, name, *args = argv
    with Client(address, timeout="30s") as client:
        result = WORKLOADS[name](client, args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
