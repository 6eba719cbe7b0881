"""A stand-in for the metadata server's token and the Compute API's calls on one zonal managed
instance group, for the autoscaler's tests and its rehearsal (Google Cloud cannot be reached from
here). It answers on loopback, over TCP or a Unix socket, as the real APIs answer: a token only to
`Metadata-Flavor: Google`, every Compute call only with that token (401 otherwise), errors as
Google's JSON error bodies. It plays the group: a resize up creates instances named
BASE-xxxx (each `boot`ed in a thread of its own: CREATING until `boot` returns, then NONE), a
resize down deletes instances of its own choosing, as Compute Engine does; deleteInstances takes
exactly the named instances (400 if one is not in the group, as with
skipInstancesOnValidationError=false) and lowers the target size; each deleted instance is
`halt`ed (DELETING until `halt` returns, then gone). A requestId seen before is answered without
doing the work again. It records every call; `faults` makes it answer the next calls of a verb
with the given statuses (503, 429...) instead, changing nothing."""

from __future__ import annotations

import json
import random
import string
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import ThreadingUnixStreamServer
from typing import Any

TOKEN = "stand-in-token"
TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
API_ROOT = "/compute/v1/"


@dataclass
class Call:
    at: float  # time.monotonic() when it came
    verb: str  # token, get, listManagedInstances, resize, deleteInstances
    args: Any  # resize: the size; deleteInstances: the instance names
    status: int
    request_id: str = ""
    seen: dict[str, Any] = field(default_factory=dict)  # what `on_delete` saw at the time


@dataclass
class ManagedGroup:
    project: str
    zone: str
    name: str
    base_instance_name: str
    boot: Callable[[str], None] = lambda name: None
    halt: Callable[[str], None] = lambda name: None
    on_delete: Callable[[list[str]], dict[str, Any]] | None = None  # looked at before deleting
    page_size: int = 500
    target_size: int = 0
    instances: dict[str, str] = field(default_factory=dict)  # name: currentAction
    calls: list[Call] = field(default_factory=list)
    faults: dict[str, list[int]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # what a boot or halt raised
    request_ids: set[str] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def path(self) -> str:
        return f"projects/{self.project}/zones/{self.zone}/instanceGroupManagers/{self.name}"

    def resize(self, size: int) -> None:
        with self.lock:
            for _ in range(size - self.target_size):
                self._create()
            live = [n for n, action in self.instances.items() if action != "DELETING"]
            for name in live[size:]:  # of its own choosing: the newest
                self._delete(name)
            self.target_size = size

    def delete_instances(self, names: list[str]) -> str:
        """Why not (nothing done), or "" when done."""
        with self.lock:
            missing = [n for n in names if self.instances.get(n, "DELETING") == "DELETING"]
            if missing:
                return f"instance {missing[0]} is not a member of the group, or is leaving it"
            for name in names:
                self._delete(name)
            self.target_size -= len(names)
            return ""

    def running(self) -> list[str]:
        with self.lock:
            return [n for n, action in self.instances.items() if action == "NONE"]

    def calls_of(self, verb: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.verb == verb]

    def _create(self) -> None:
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=4))  # noqa: S311
        name = f"{self.base_instance_name}-{suffix}"
        self.instances[name] = "CREATING"
        self._in_thread(name, self.boot, "NONE")

    def _delete(self, name: str) -> None:
        self.instances[name] = "DELETING"
        self._in_thread(name, self.halt, None)

    def _in_thread(self, name: str, work: Callable[[str], None], then: str | None) -> None:
        def run() -> None:
            try:
                work(name)
            except Exception as error:  # the test reads `failed`: nothing is swallowed
                self.failed.append(f"{name}: {error!r}")
            with self.lock:
                if then is None:
                    self.instances.pop(name, None)
                elif self.instances.get(name) == "CREATING":
                    self.instances[name] = then

        threading.Thread(target=run, daemon=True).start()


class Handler(BaseHTTPRequestHandler):
    group: ManagedGroup  # set on the class `serve` makes

    def do_GET(self) -> None:
        if self.path == TOKEN_PATH:
            return self._token()
        return self._compute("GET")

    def do_POST(self) -> None:
        return self._compute("POST")

    def _token(self) -> None:
        if self.headers.get("Metadata-Flavor") != "Google":
            return self._answer(403, {"error": "Missing Metadata-Flavor: Google"})
        self._record("token", None, 200)
        return self._answer(200, {"access_token": TOKEN, "expires_in": 3599,
                                  "token_type": "Bearer"})  # fmt: skip

    def _compute(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        base = API_ROOT + self.group.path
        verb = {(base, "GET"): "get"}.get((url.path, method)) or url.path.removeprefix(base + "/")
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not url.path.startswith(base) or verb not in VERBS:
            return self._error(404, "notFound", f"The resource '{url.path}' was not found")
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(401, "authError", "Request had invalid authentication credentials")
        args: Any = int(query.get("size", 0)) if verb == "resize" else _names(body)
        with self.group.lock:
            planned = self.group.faults.get(verb, [])
            if planned:
                status = planned.pop(0)
                self._record(verb, args, status, query.get("requestId", ""))
                return self._error(status, "backendError", "The service is unavailable")
            seen = {}
            if verb == "deleteInstances" and self.group.on_delete:  # before anything goes
                seen = self.group.on_delete(args)
            status, answer = VERBS[verb](self.group, query, args)  # type: ignore[operator]
            self._record(verb, args, status, query.get("requestId", "")).seen = seen
        return self._answer(status, answer)

    def _record(self, verb: str, args: Any, status: int, request_id: str = "") -> Call:
        call = Call(time.monotonic(), verb, args, status, request_id)
        with self.group.lock:
            self.group.calls.append(call)
        return call

    def _error(self, status: int, reason: str, message: str) -> None:
        errors = [{"reason": reason, "message": message}]
        self._answer(status, {"error": {"code": status, "message": message, "errors": errors}})

    def _answer(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def address_string(self) -> str:
        return "stand-in"  # a Unix socket's peer has no address


def _names(body: dict[str, Any]) -> list[str]:
    return [str(url).rsplit("/", 1)[-1] for url in body.get("instances", [])]


def _get(group: ManagedGroup, query: dict[str, str], args: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"name": group.name, "targetSize": group.target_size,
                 "baseInstanceName": group.base_instance_name}  # fmt: skip


def _list(group: ManagedGroup, query: dict[str, str], args: Any) -> tuple[int, dict[str, Any]]:
    start = int(query.get("pageToken") or 0)
    names = list(group.instances)
    page = names[start : start + group.page_size]
    answer: dict[str, Any] = {"managedInstances": [
        {"instance": f"https://compute.googleapis.com/compute/v1/projects/{group.project}/zones/"
                     f"{group.zone}/instances/{name}",
         "name": name, "currentAction": group.instances[name],
         "instanceStatus": "RUNNING" if group.instances[name] == "NONE" else "PROVISIONING"}
        for name in page
    ]}  # fmt: skip
    if start + group.page_size < len(names):
        answer["nextPageToken"] = str(start + group.page_size)
    return 200, answer


def _operation(group: ManagedGroup, verb: str) -> dict[str, Any]:
    return {"kind": "compute#operation", "operationType": verb, "status": "RUNNING",
            "targetLink": group.path}  # fmt: skip


def _resize(group: ManagedGroup, query: dict[str, str], size: int) -> tuple[int, dict[str, Any]]:
    if _seen(group, query):
        return 200, _operation(group, "compute.instanceGroupManagers.resize")
    group.resize(size)
    return 200, _operation(group, "compute.instanceGroupManagers.resize")


def _delete(
    group: ManagedGroup, query: dict[str, str], names: list[str]
) -> tuple[int, dict[str, Any]]:
    if not _seen(group, query) and (why := group.delete_instances(names)):
        error = {"code": 400, "message": why, "errors": [{"reason": "invalid", "message": why}]}
        return 400, {"error": error}
    return 200, _operation(group, "compute.instanceGroupManagers.deleteInstances")


def _seen(group: ManagedGroup, query: dict[str, str]) -> bool:
    """Whether this requestId came before (the work is done once); remembers it."""
    request_id = query.get("requestId", "")
    seen = request_id in group.request_ids
    if request_id:
        group.request_ids.add(request_id)
    return seen


VERBS = {"get": _get, "listManagedInstances": _list, "resize": _resize, "deleteInstances": _delete}


class UnixHTTPServer(ThreadingUnixStreamServer):
    daemon_threads = True


def serve(group: ManagedGroup, unix_socket: str = "") -> tuple[Any, str]:
    """Serves `group` in a thread: (the server, to shut down; "HOST:PORT" on loopback, or the
    socket's path)."""
    handler = type("GroupHandler", (Handler,), {"group": group})
    server: Any
    if unix_socket:
        server = UnixHTTPServer(unix_socket, handler)
        where = unix_socket
    else:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        where = f"127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, where
