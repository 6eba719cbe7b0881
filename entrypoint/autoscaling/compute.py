"""The Compute API calls the autoscaler makes on its managed instance group, with the VM's own
credentials: an access token from the metadata server (the service account of the VM; no key
anywhere). Standard library only (urllib): the calls are four, and Google's client libraries would
add tens of megabytes to the image for them.

Where they go is what Google's own clients let a user override: the metadata server at
GCE_METADATA_HOST (google-auth's variable, host[:port]), the Compute API at
CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE (gcloud's, the API's root URL); settings reads both.

A call that fails for a reason that passes (429, 5xx, a rate or quota refusal, the network) is
tried again after 1, 2, 4, 8 and 16 s, one log line per retry; any other failure, or the last
retry's, raises ApiError with one line saying why. A mutating call keeps one requestId across its
retries, so that Compute Engine carries it out once even when an answer was lost."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from entrypoint.autoscaling.policy import Limits

logger = logging.getLogger("distributed.preloading.autoscale")

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds before each new try of a call that may pass
HTTP_TIMEOUT = 30.0  # seconds one request may take
# the `reason` of a 403 that passes: too many calls, or an API quota, for now
PASSING_REFUSALS = {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}
TOKEN_MARGIN = 60.0  # seconds before its expiry a token is fetched anew


class ApiError(Exception):
    """A call failed for good: one line, no secret."""


@dataclass(frozen=True)
class Instance:
    name: str
    action: str  # the group's currentAction on it: NONE, CREATING, DELETING, ...


@dataclass(frozen=True)
class Group:
    target_size: int
    instances: tuple[Instance, ...]

    def named(self, name: str) -> Instance | None:
        return next((i for i in self.instances if i.name == name), None)


@dataclass(frozen=True)
class GroupPath:
    """projects/PROJECT/zones/ZONE/instanceGroupManagers/GROUP."""

    project: str
    zone: str
    name: str

    @classmethod
    def parse(cls, path: str) -> GroupPath:
        parts = path.split("/")
        if len(parts) != 6 or parts[0::2] != ["projects", "zones", "instanceGroupManagers"]:
            raise ValueError(f"{path[:80]!r} is not projects/P/zones/Z/instanceGroupManagers/G")
        return cls(parts[1], parts[3], parts[5])

    def __str__(self) -> str:
        return f"projects/{self.project}/zones/{self.zone}/instanceGroupManagers/{self.name}"


@dataclass(frozen=True)
class Settings:
    """What the scheduler was given (settings.Autoscale, through dask's config)."""

    group: GroupPath
    limits: Limits
    metadata_host: str
    compute_api: str  # ends with "/"


Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Failure:
    status: int | None  # None: no answer (the network)
    text: str  # one line: what came back

    @property
    def passes(self) -> bool:
        if self.status is None or self.status == 429 or self.status >= 500:
            return True
        return self.status == 403 and any(reason in self.text for reason in PASSING_REFUSALS)


class ComputeApi:
    """The group's Compute API, as the autoscaler uses it."""

    def __init__(self, settings: Settings, sleep: Sleep = asyncio.sleep) -> None:
        self.settings = settings
        self.sleep = sleep
        self.token = ""
        self.token_expiry = 0.0

    async def group(self) -> Group:
        """The group's target size and its instances (each with its current action)."""
        described = await self._call("get", "GET", "")
        instances: list[Instance] = []
        page = ""
        while True:
            query = "?" + urllib.parse.urlencode({"pageToken": page}) if page else ""
            listed = await self._call("list", "POST", f"/listManagedInstances{query}")
            for managed in listed.get("managedInstances", []):
                name = managed.get("name") or managed["instance"].rsplit("/", 1)[-1]
                instances.append(Instance(name, managed.get("currentAction", "NONE")))
            page = listed.get("nextPageToken", "")
            if not page:
                return Group(int(described.get("targetSize", 0)), tuple(instances))

    async def resize(self, size: int) -> None:
        await self._call("resize", "POST", f"/resize?size={size}", mutating=True)

    async def delete_instances(self, names: list[str]) -> None:
        """deleteInstances: exactly these instances go, and the target size drops by as many."""
        zone = self.settings.group.zone
        body = {
            "instances": [f"zones/{zone}/instances/{name}" for name in names],
            "skipInstancesOnValidationError": False,
        }
        await self._call("deleteInstances", "POST", "/deleteInstances", body, mutating=True)

    async def _call(
        self, verb: str, method: str, suffix: str, body: dict[str, Any] | None = None,
        mutating: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        url = f"{self.settings.compute_api}{self.settings.group}{suffix}"
        if mutating:  # one id for every try: Compute Engine does the work once
            url += ("&" if "?" in url else "?") + f"requestId={uuid.uuid4()}"
        data = json.dumps(body or {}).encode() if method == "POST" else None
        what = f"{verb} {self.settings.group.name}"

        async def attempt() -> dict[str, Any] | Failure:
            token = await self._token()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            answer = await asyncio.to_thread(_request, method, url, headers, data)
            if isinstance(answer, Failure) and answer.status == 401:
                self.token_expiry = 0.0  # fetched anew on the next try
            return answer

        return await self._with_retries(what, attempt)

    async def _token(self) -> str:
        if time.monotonic() < self.token_expiry:
            return self.token
        url = (f"http://{self.settings.metadata_host}/computeMetadata/v1/instance/"
               "service-accounts/default/token")  # fmt: skip

        async def attempt() -> dict[str, Any] | Failure:
            return await asyncio.to_thread(_request, "GET", url, {"Metadata-Flavor": "Google"})

        answer = await self._with_retries("token from the metadata server", attempt)
        self.token = str(answer["access_token"])
        self.token_expiry = time.monotonic() + float(answer.get("expires_in", 0)) - TOKEN_MARGIN
        return self.token

    async def _with_retries(
        self, what: str, attempt: Callable[[], Awaitable[dict[str, Any] | Failure]]
    ) -> dict[str, Any]:
        tries = len(RETRY_DELAYS) + 1
        for number, delay in enumerate((*RETRY_DELAYS, None), 1):
            answer = await attempt()
            if not isinstance(answer, Failure):
                return answer
            if delay is None or not (answer.passes or answer.status == 401):
                raise ApiError(f"{what}: {answer.text} (try {number} of {tries}, given up)")
            logger.warning("autoscale: %s: %s; try %d of %d in %g s",
                           what, answer.text, number + 1, tries, delay)  # fmt: skip
            await self.sleep(delay)
        raise AssertionError("unreachable")


def _request(
    method: str, url: str, headers: dict[str, str], data: bytes | None = None
) -> dict[str, Any] | Failure:
    """One HTTP request: its JSON answer, or what went wrong in one line."""
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer
    except urllib.error.HTTPError as error:
        return Failure(error.code, f"{error.code} {error.reason}{_reason(error.read())}")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return Failure(None, f"no answer: {reason}"[:200])


def _reason(body: bytes) -> str:
    """The error's reason and message from a Google API's JSON error body, short."""
    try:
        error = json.loads(body)["error"]
        reasons = ",".join(e.get("reason", "") for e in error.get("errors", []))
        return f" ({reasons or error.get('status', '')}: {error.get('message', '')})"[:200]
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""
