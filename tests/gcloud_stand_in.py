"""A stand-in for gcloud in the GCE tests (Google Cloud cannot be reached from here). It appends
each call's argv to the file $GCLOUD_STAND_IN_LOG and keeps one project's state in the JSON file
$GCLOUD_STAND_IN_STATE: the APIs that are on, the subnets and their Private Google Access, what
the calls created, the IAM bindings. It answers as gcloud does, with `ERROR: (gcloud.GROUP.VERB)`
on stderr and exit 1: a call to an API that is not on is refused; a create of something that
exists is refused ("already exists", except a NAT, whose create patches its router and is refused
in other words); a delete or describe of something missing is refused; a binding for an account
that does not exist is refused with "does not exist", and so, `unpropagated` times, is one for
an account that does (IAM propagating), and so is one to a custom role (projects/P/roles/R)
that was not created; a project's own binding (`gcloud projects add-iam-policy-binding P`) is kept
as any other, its --condition aside; removing a binding that is not there is refused; a call
starting with a key of `refuse` gets that error. Another project is refused, but for a registry's
repository (an image may come from another project's registry, whose API is on)."""

from __future__ import annotations

import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API = {
    "compute": "compute.googleapis.com",
    "secrets": "secretmanager.googleapis.com",
    "iam": "iam.googleapis.com",
    "artifacts": "artifactregistry.googleapis.com",
}
VERBS = ("create", "delete", "describe", "enable", "update", "add-iam-policy-binding",
         "remove-iam-policy-binding", "resize")  # fmt: skip
State = dict[str, Any]


def fresh_state(project: str) -> State:
    """A project that has never run anything: no API on, the `default` network's subnet in
    us-central1 without Private Google Access, internal DNS zonal."""
    return {
        "project": project,
        "services": [],
        "subnets": {"us-central1/default": {"private_ip_google_access": False}},
        "things": {},
        "bindings": [],
        "unpropagated": 0,
        "dns": "ZONAL_ONLY",
        "refuse": {},
    }


class Refused(Exception):
    """gcloud's error message; the call exits 1."""


def main(argv: list[str]) -> int:
    with Path(os.environ["GCLOUD_STAND_IN_LOG"]).open("a") as log:
        log.write(json.dumps(["gcloud", *argv]) + "\n")
    state_file = Path(os.environ["GCLOUD_STAND_IN_STATE"])
    state = json.loads(state_file.read_text())
    at = next(i for i, arg in enumerate(argv) if arg in VERBS)
    names = list(itertools.takewhile(lambda arg: not arg.startswith("--"), argv[at + 1 :]))
    call = Call(" ".join(argv[:at]), argv[at], names, flags(argv[at + 1 + len(names) :]))
    try:
        for prefix, message in state["refuse"].items():
            if " ".join(argv).startswith(prefix):
                raise Refused(message)
        output = answer(state, call)
    except Refused as refused:
        print(f"ERROR: (gcloud.{'.'.join(argv[: at + 1])}) {refused}", file=sys.stderr)
        return 1
    finally:  # a refused call changes nothing but the count of unpropagated answers
        state_file.write_text(json.dumps(state, indent=1, sort_keys=True))
    if output:
        print(output)
    return 0


@dataclass(frozen=True)
class Call:
    """One gcloud call: `gcloud KIND... VERB NAMES... --FLAG VALUE...`."""

    kind: str
    verb: str
    names: list[str]
    flags: dict[str, str]

    def key(self, name: str) -> str:
        """Where a thing is kept: kind, location (zone, router or region) and name."""
        places = [self.flags[flag] for flag in ("--zone", "--router", "--region") if flag in self]
        return f"{self.kind}/{(places or [''])[0]}/{name}"

    def __contains__(self, flag: str) -> bool:
        return flag in self.flags


def flags(args: list[str]) -> dict[str, str]:
    found = {}
    for flag, value in itertools.zip_longest(args, args[1:], fillvalue="--"):
        if flag.startswith("--"):
            name, _, inline = flag.partition("=")
            found[name] = inline or (value if not value.startswith("--") else "")
    return found


def answer(state: State, call: Call) -> str:
    project = call.names[0] if call.kind == "projects" else call.flags.get("--project")
    elsewhere = project != state["project"]
    if elsewhere and call.kind != "artifacts repositories":
        raise Refused(f"PERMISSION_DENIED: project [{project}] not found or not yours")
    api = API.get(call.kind.split()[0])
    if api and api not in state["services"] and not elsewhere:
        raise Refused(f"PERMISSION_DENIED: {api} has not been used in project {project} "
                      "before or it is disabled")  # fmt: skip
    handler = {"enable": enable, "update": update, "create": create, "delete": delete,
               "describe": describe, "add-iam-policy-binding": bind,
               "remove-iam-policy-binding": unbind, "resize": resize}  # fmt: skip
    return handler[call.verb](state, call)


def enable(state: State, call: Call) -> str:
    state["services"] = sorted({*state["services"], *call.names})
    return ""


def update(state: State, call: Call) -> str:
    [name] = call.names
    subnet = state["subnets"].get(f"{call.flags.get('--region')}/{name}")
    if subnet is None:
        raise Refused(f"Could not fetch resource:\n - The resource '{name}' was not found")
    if "--enable-private-ip-google-access" in call.flags:
        subnet["private_ip_google_access"] = True
    if "--no-enable-private-ip-google-access" in call.flags:
        subnet["private_ip_google_access"] = False
    return ""


def account(state: State, name: str) -> str:
    return f"iam service-accounts//{name}@{state['project']}.iam.gserviceaccount.com"


def create(state: State, call: Call) -> str:
    [name] = call.names
    key = account(state, name) if call.kind == "iam service-accounts" else call.key(name)
    if key in state["things"]:
        raise Refused(f"{name}: NAT names must be unique within a router" if "nats" in key
                      else f"The resource '{name}' already exists")  # fmt: skip
    needs = {"--router": "compute routers/{region}/{}",
             "--template": "compute instance-templates//{}",
             "--service-account": "iam service-accounts//{}"}  # fmt: skip
    for flag, pattern in needs.items():
        if flag in call.flags:
            need = pattern.format(call.flags[flag], region=call.flags.get("--region"))
            if need not in state["things"]:
                raise Refused(f"The resource '{call.flags[flag]}' was not found")
    if "--data-file" in call.flags and not Path(call.flags["--data-file"]).is_file():
        raise Refused(f"Unable to read file [{call.flags['--data-file']}]")
    state["things"][key] = call.flags
    return ""


def delete(state: State, call: Call) -> str:
    for name in call.names:
        key = existing(state, call, name)
        users = [k for k, v in state["things"].items() if v.get("--template") == name]
        if call.kind == "compute instance-templates" and users:
            raise Refused(f"The resource '{name}' is already being used by '{users[0]}'")
        del state["things"][key]
        state["bindings"] = [b for b in state["bindings"] if b[:2] != [call.kind, name]]
        for nat in [k for k in state["things"] if k.startswith(f"compute routers nats/{name}/")]:
            del state["things"][nat]  # a router takes its NATs with it
    return ""


def describe(state: State, call: Call) -> str:
    if call.kind == "compute project-info":
        return str(state["dns"])
    [name] = call.names
    return json.dumps(state["things"][existing(state, call, name)])


def existing(state: State, call: Call, name: str) -> str:
    """The key of the thing `name` (a service account by its email), which must be there."""
    key = f"iam service-accounts//{name}" if call.kind == "iam service-accounts" else call.key(name)
    if key not in state["things"]:
        raise Refused(f"NOT_FOUND: The resource '{name}' was not found")
    return key


def bind(state: State, call: Call) -> str:
    [name] = call.names
    member = call.flags["--member"].removeprefix("serviceAccount:")
    if call.kind == "secrets" and call.key(name) not in state["things"]:
        raise Refused(f"NOT_FOUND: Secret [{name}] not found")
    if f"iam service-accounts//{member}" not in state["things"] or state["unpropagated"]:
        state["unpropagated"] = max(0, state["unpropagated"] - 1)
        raise Refused(f"INVALID_ARGUMENT: Service account {member} does not exist.")
    role = call.flags["--role"]
    custom = role.startswith("projects/") and f"iam roles//{role.rsplit('/', 1)[1]}"
    if custom and custom not in state["things"]:
        raise Refused(f"INVALID_ARGUMENT: Role ({role}) does not exist in the hierarchy.")
    binding = [call.kind, name, call.flags["--member"], call.flags["--role"]]
    if binding not in state["bindings"]:
        state["bindings"].append(binding)
    return ""


def unbind(state: State, call: Call) -> str:
    [name] = call.names
    binding = [call.kind, name, call.flags["--member"], call.flags["--role"]]
    if binding not in state["bindings"]:
        raise Refused(f"Policy binding with the specified principal, role, and condition not "
                      f"found: {call.flags['--member']}")  # fmt: skip
    state["bindings"].remove(binding)
    return ""


def resize(state: State, call: Call) -> str:
    [name] = call.names
    state["things"][existing(state, call, name)]["--size"] = call.flags["--size"]
    return ""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
