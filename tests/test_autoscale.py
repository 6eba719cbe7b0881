"""The autoscaler's parts that need no scheduler: its policy (decisions from demand and time, the
damping), its Compute API calls against the stand-in (tests/compute_stand_in.py) on loopback, and
the settings that switch it on. The loop against distributed's real scheduler is in
tests/test_preload.py; the whole of it, on the real engine, in tests/test_gce_autoscale.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from entrypoint.autoscaling import compute
from entrypoint.autoscaling.compute import ApiError, ComputeApi, GroupPath, Settings
from entrypoint.autoscaling.policy import DAMPING, Grow, Hold, Limits, Policy, Shrink
from entrypoint.cluster import Plan, child_environment
from entrypoint.errors import ConfigError
from entrypoint.settings import from_environ
from tests.compute_stand_in import TOKEN, ManagedGroup, serve

LIMITS = Limits(minimum=1, maximum=8, workers_per_vm=2)
START = 1000.0  # a clock's reading when the policy first sees the demand
AFTER_ALL = START + DAMPING.window + DAMPING.after_growth  # every hold of time is over


def settled(limits: Limits = LIMITS, workers: int = 0) -> Policy:
    """A policy that has seen `workers` wanted since START, and no growth."""
    policy = Policy(limits)
    assert isinstance(policy.decide(START, workers, 1, 0, False), Hold | Grow)
    return policy


@pytest.mark.parametrize(("workers", "size"), [(3, 2), (4, 2), (5, 3), (16, 8), (300, 8)])
def test_autoscale_grows_at_once_upward_and_never_past_the_maximum(workers: int, size: int) -> None:
    """Workers wanted become VMs of workers_per_vm (rounded up), at once, capped at the maximum."""
    assert Policy(LIMITS).decide(START, workers, 1, 0, False) == Grow(size)


def test_autoscale_holds_at_the_maximum_and_never_resizes_down() -> None:
    """At the maximum more demand changes nothing; a target above the maximum (a manual resize)
    is never resized: only a shrink (deleteInstances) brings it down."""
    policy = Policy(LIMITS)
    assert isinstance(policy.decide(START, 300, 8, 0, False), Hold)
    assert not isinstance(policy.decide(START, 300, 10, 0, False), Grow)


def test_autoscale_grows_past_the_vms_it_is_retiring() -> None:
    """VMs being retired still count in the target size but serve nothing: a growth then asks
    for the VMs wanted on top of them."""
    assert Policy(LIMITS).decide(START, 8, 3, 1, True) == Grow(5)


def test_autoscale_shrinks_only_to_the_highest_demand_of_the_window() -> None:
    """After 8 VMs were wanted, idle rounds shrink nothing until that demand is a window old;
    then the group shrinks toward the highest demand still in the window."""
    policy = Policy(LIMITS)
    assert isinstance(policy.decide(START, 16, 8, 0, False), Hold)  # wanted 8, had 8
    for second in range(5, int(DAMPING.window), 5):
        assert isinstance(policy.decide(START + second, 0, 8, 0, False), Hold)
    policy.decide(START + DAMPING.window - 1, 6, 8, 0, False)  # 3 VMs wanted, lately
    assert policy.decide(START + DAMPING.window + 1, 0, 8, 0, False) == Shrink(2)
    assert policy.highest() == 3


@pytest.mark.parametrize(("serving", "step"), [(1, 0), (2, 1), (4, 1), (7, 1), (8, 2), (40, 10)])
def test_autoscale_shrinks_at_most_a_quarter_of_the_group_per_step(serving: int, step: int) -> None:
    """One shrink removes at most a quarter of the VMs serving (at least one), never going
    below the minimum (1 here)."""
    policy = settled(Limits(minimum=1, maximum=100, workers_per_vm=1))
    decision = policy.decide(AFTER_ALL, 0, serving, 0, False)
    assert decision == (Shrink(step) if step else Hold("no VM to spare"))


def test_autoscale_never_shrinks_below_the_minimum() -> None:
    """An idle cluster keeps its minimum of VMs."""
    policy = settled(Limits(minimum=3, maximum=8, workers_per_vm=1))
    assert policy.decide(AFTER_ALL, 0, 4, 0, False) == Shrink(1)
    assert isinstance(policy.decide(AFTER_ALL, 0, 3, 0, False), Hold)


def test_autoscale_shrinks_nothing_right_after_a_growth() -> None:
    """For after_growth seconds after a growth, no shrink, however idle; then one."""
    policy = Policy(LIMITS)
    assert policy.decide(START, 16, 1, 0, False) == Grow(8)
    later = START + DAMPING.window + 1  # the window has forgotten the demand
    policy.decide(later, 0, 8, 0, False)
    assert isinstance(policy.decide(START + DAMPING.after_growth - 1, 0, 8, 0, False), Hold)
    assert policy.decide(START + DAMPING.after_growth + 1, 0, 8, 0, False) == Shrink(2)


def test_autoscale_starts_no_shrink_while_one_is_under_way() -> None:
    """While VMs are being retired or deleted, no other shrink starts."""
    policy = settled()
    assert isinstance(policy.decide(AFTER_ALL, 0, 8, 0, True), Hold)
    assert policy.decide(AFTER_ALL, 0, 8, 0, False) == Shrink(2)


# The Compute API, against the stand-in on loopback


@pytest.fixture
def group() -> Iterator[tuple[ManagedGroup, Settings]]:
    """A group of 2 VMs in the stand-in, and the settings that point the autoscaler at it."""
    managed = ManagedGroup("test-project", "us-central1-a", "dask-cluster-workers",
                           "dask-cluster-worker", target_size=0)  # fmt: skip
    managed.resize(2)
    server, where = serve(managed)
    settings = Settings(GroupPath.parse(managed.path), LIMITS, where,
                        f"http://{where}/compute/v1/")  # fmt: skip
    try:
        yield managed, settings
    finally:
        server.shutdown()


class Waits:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def run(api: ComputeApi, method: str, *args: Any) -> Any:
    return asyncio.run(getattr(api, method)(*args))


def test_autoscale_calls_compute_with_the_metadata_servers_token(
    group: tuple[ManagedGroup, Settings],
) -> None:
    """The token comes from the metadata server (asked with Metadata-Flavor: Google), once, and
    goes with every Compute call (the stand-in answers 401 without it); the group is read with
    its target size and every instance, page after page."""
    managed, settings = group
    managed.page_size = 1
    api = ComputeApi(settings)
    read = run(api, "group")
    assert read.target_size == 2 and {i.name for i in read.instances} == set(managed.instances)
    run(api, "resize", 3)
    assert [c.verb for c in managed.calls] == [
        "token", "get", "listManagedInstances", "listManagedInstances", "resize"
    ]  # fmt: skip
    assert managed.target_size == 3 and api.token == TOKEN


def test_autoscale_deletes_exactly_the_named_instances(
    group: tuple[ManagedGroup, Settings],
) -> None:
    """deleteInstances names the instances as zones/ZONE/instances/NAME: exactly those go, and
    the target size drops by as many."""
    managed, settings = group
    leaving, staying = list(managed.instances)
    run(ComputeApi(settings), "delete_instances", [leaving])
    [call] = managed.calls_of("deleteInstances")
    assert call.args == [leaving] and call.status == 200
    assert managed.target_size == 1 and list(managed.instances) == [staying]


@pytest.mark.parametrize("fault", [[503, 503], [429], [500, 502, 504]], ids=["503s", "429", "5xx"])
def test_autoscale_retries_what_passes_with_backoff_one_line_each(
    group: tuple[ManagedGroup, Settings], caplog: pytest.LogCaptureFixture, fault: list[int]
) -> None:
    """503, 429 and any 5xx are tried again after 1, 2, 4... s, one warning line each, with the
    same requestId, so that the work is done once."""
    managed, settings = group
    managed.faults["resize"] = list(fault)
    waits = Waits()
    with caplog.at_level(logging.WARNING):
        run(ComputeApi(settings, sleep=waits), "resize", 4)
    calls = managed.calls_of("resize")
    assert [c.status for c in calls] == [*fault, 200]
    assert len({c.request_id for c in calls}) == 1 and calls[0].request_id
    assert waits.seconds == list(compute.RETRY_DELAYS[: len(fault)])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(fault) and all("\n" not in line for line in lines)
    assert lines[0].startswith(f"autoscale: resize {managed.name}: {fault[0]} ")
    assert lines[0].endswith("; try 2 of 6 in 1 s")
    assert managed.target_size == 4


def test_autoscale_retries_a_rate_or_quota_refusal() -> None:
    """A 403 whose reason is rateLimitExceeded, userRateLimitExceeded or quotaExceeded passes;
    any other 403 (a permission) does not."""
    quota = compute.Failure(403, "403 Forbidden (quotaExceeded: Quota exceeded for quota metric)")
    denied = compute.Failure(403, "403 Forbidden (forbidden: Required 'compute.instanceGroup")
    assert quota.passes and not denied.passes
    assert compute.Failure(None, "no answer: [Errno 111] Connection refused").passes


def test_autoscale_gives_up_in_one_line_and_never_retries_a_refusal(
    group: tuple[ManagedGroup, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """A call that keeps failing is given up after 6 tries (31 s of waiting), ApiError in one
    line; a refusal that would only come again (404 here) is not retried."""
    managed, settings = group
    managed.faults["resize"] = [503] * 10
    waits = Waits()
    api = ComputeApi(settings, sleep=waits)
    with pytest.raises(ApiError) as error:
        run(api, "resize", 4)
    assert str(error.value).endswith("(try 6 of 6, given up)") and "\n" not in str(error.value)
    assert sum(waits.seconds) == 31 and managed.target_size == 2
    wrong = Settings(GroupPath.parse(managed.path.replace("workers", "other")), LIMITS,
                     settings.metadata_host, settings.compute_api)  # fmt: skip
    with pytest.raises(ApiError, match=r"^get dask-cluster-other: 404 .*\(try 1 of 6, given up\)$"):
        run(ComputeApi(wrong, sleep=waits), "group")


def test_autoscale_retries_when_nothing_answers(caplog: pytest.LogCaptureFixture) -> None:
    """No metadata server (a port nobody listens on): the token is tried again with backoff,
    then given up in one line."""
    settings = Settings(GroupPath("test-project", "us-central1-a", "g"), LIMITS, "127.0.0.1:9",
                        "http://127.0.0.1:9/compute/v1/")  # fmt: skip
    waits = Waits()
    with caplog.at_level(logging.WARNING), pytest.raises(ApiError, match=r"^token from the meta"):
        run(ComputeApi(settings, sleep=waits), "group")
    assert len(waits.seconds) == 5 and "no answer" in caplog.records[0].getMessage()


# The settings that switch it on

PEMS = {"DASK_CLUSTER_CERT": "x", "DASK_CLUSTER_KEY": "y"}
GROUP = "projects/my-project/zones/us-central1-a/instanceGroupManagers/dask-cluster-workers"
AUTOSCALE = {"DASK_ROLE": "scheduler", "AUTOSCALE": "1:4", "AUTOSCALE_GROUP": GROUP,
             "AUTOSCALE_WORKERS_PER_VM": "4"}  # fmt: skip


@pytest.fixture
def pems(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from entrypoint import settings

    monkeypatch.setattr(settings, "read_pems", lambda environ: None)
    return PEMS


def test_autoscale_settings_reach_the_scheduler_as_dask_config(
    pems: dict[str, str], tmp_path: Any
) -> None:
    """AUTOSCALE=MIN:MAX, its group and its VMs' workers (and Google's own overrides of where the
    metadata server and the Compute API are) reach the scheduler as dask config."""
    from datetime import UTC, datetime

    overrides = {
        "GCE_METADATA_HOST": "127.0.0.1:9180",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": "http://127.0.0.1:9180/compute/v1",
    }
    environ = {**pems, **AUTOSCALE, **overrides}
    settings = from_environ(environ)
    assert settings.autoscale is not None
    plan = Plan.of(tmp_path, settings, datetime.now(UTC))
    env = child_environment({}, plan, "scheduler")
    assert env["DASK_DASK_TLS__AUTOSCALE__GROUP"] == GROUP
    assert (env["DASK_DASK_TLS__AUTOSCALE__MINIMUM"], env["DASK_DASK_TLS__AUTOSCALE__MAXIMUM"]) == (
        "1", "4"
    )  # fmt: skip
    assert env["DASK_DASK_TLS__AUTOSCALE__WORKERS_PER_VM"] == "4"
    assert env["DASK_DASK_TLS__AUTOSCALE__METADATA_HOST"] == "127.0.0.1:9180"
    assert env["DASK_DASK_TLS__AUTOSCALE__COMPUTE_API"] == "http://127.0.0.1:9180/compute/v1/"
    default = from_environ({**pems, **AUTOSCALE}).autoscale
    assert default is not None and default.metadata_host == "metadata.google.internal"
    assert default.compute_api == "https://compute.googleapis.com/compute/v1/"
    assert from_environ(pems).autoscale is None


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"DASK_ROLE": "all"}, "AUTOSCALE"),
        ({"DASK_ROLE": "worker", "DASK_SCHEDULER_ADDRESS": "tls://s:8786"}, "AUTOSCALE"),
        ({"AUTOSCALE": "4"}, "AUTOSCALE"),
        ({"AUTOSCALE": "4:1"}, "AUTOSCALE"),
        ({"AUTOSCALE": "0:0"}, "AUTOSCALE"),
        ({"AUTOSCALE": "1:5000"}, "AUTOSCALE"),
        ({"AUTOSCALE": "-1:4"}, "AUTOSCALE"),
        ({"AUTOSCALE_GROUP": ""}, "AUTOSCALE_GROUP"),
        ({"AUTOSCALE_GROUP": "dask-cluster-workers"}, "AUTOSCALE_GROUP"),
        ({"AUTOSCALE_GROUP": GROUP.replace("zones", "regions")}, "AUTOSCALE_GROUP"),
        ({"AUTOSCALE_WORKERS_PER_VM": "0"}, "AUTOSCALE_WORKERS_PER_VM"),
        ({"AUTOSCALE_WORKERS_PER_VM": ""}, "AUTOSCALE_WORKERS_PER_VM"),
        ({"GCE_METADATA_HOST": "http://metadata"}, "GCE_METADATA_HOST"),
        ({"CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": "compute.googleapis.com"},
         "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE"),
    ],
)  # fmt: skip
def test_autoscale_settings_are_refused_in_one_line(
    pems: dict[str, str], changes: dict[str, str], variable: str
) -> None:
    """AUTOSCALE on another role than scheduler, a MIN:MAX that is none or out of range, a group
    that is not a zonal group's path, a missing companion, an override that is no host or URL:
    one ConfigError naming the variable (exit 78)."""
    with pytest.raises(ConfigError) as refused:
        from_environ({**pems, **AUTOSCALE, **changes})
    assert refused.value.variable == variable and "\n" not in str(refused.value)
