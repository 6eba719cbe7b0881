"""`gce --apply`: runs a plan's gcloud commands in order, exactly as printed, so that a second run
on the same project changes nothing and fails nowhere: a create that fails while what it creates
is there (its describe command finds it) counts as done and leaves the thing as it is. A binding
for a service account IAM does not know yet (a new account takes a minute or more to propagate) is
tried again with a bounded backoff, one line per retry. Any other failure stops the run and names
the command that undoes what was made. A `Check` reads the project at its place in the plan and
can stop the run before anything more is made."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import sleep

from entrypoint.errors import EXIT_CONFIG, ToolError
from entrypoint.tools.gcloud import Command, describe_for

# seconds before each new try of a binding whose service account IAM does not know yet: about a
# minute and a half in all (Google's IAM guide: a new account can take 60 s or more to be usable)
IAM_RETRY_DELAYS = (2, 4, 8, 16, 30, 30)
# what gcloud says then: "INVALID_ARGUMENT: Service account NAME@PROJECT... does not exist."
UNKNOWN_ACCOUNT = "does not exist"


@dataclass(frozen=True)
class Check:
    """A read --apply makes at its place in the plan (never printed): `refusal` of the command's
    output is "" to go on, or the one line that stops the run (a configuration error)."""

    command: Command
    refusal: Callable[[str], str]


Step = Command | Check


def printed(steps: Sequence[Step]) -> list[Command]:
    """The plan as printed: its commands, without the reads only --apply makes."""
    return [step for step in steps if not isinstance(step, Check)]


def apply(steps: Sequence[Step], deleting: bool, undo: str) -> int:
    """Runs each step; stops at the first failure unless `deleting` (which goes on past one).
    `undo` is the command that removes what the steps made ("" when there is none)."""
    if not shutil.which("gcloud"):
        print("gcloud is not installed here: run the commands without --apply and paste them")
        return 1
    failed = []
    for step in steps:
        if isinstance(step, Check):
            _check(step)
        elif not _run(step):
            failed.append(step)
            if not deleting:
                hint = f"; {undo} removes what was made" if undo else ""
                print(f"gcloud failed at: {shlex.join(step)}{hint}", file=sys.stderr)
                return 1
    for command in failed:
        print(f"gcloud failed at: {shlex.join(command)}", file=sys.stderr)
    return 1 if failed else 0


def _run(command: Command) -> bool:
    """True when `command` did its work, or found it done; gcloud's messages go to stderr (its
    error too when the thing turns out to be there: what went wrong stays visible)."""
    print("+", shlex.join(command), flush=True)
    result = _gcloud(command)
    for attempt, delay in enumerate(IAM_RETRY_DELAYS, 2):
        if not _account_unknown(command, result):
            break
        print(f"IAM does not know the new service account yet: try {attempt} of "
              f"{len(IAM_RETRY_DELAYS) + 1} in {delay} s", file=sys.stderr, flush=True)  # fmt: skip
        sleep(delay)
        result = _gcloud(command)
    sys.stderr.write(result.stderr)
    if result.returncode and _already_there(command):
        at = command.index("create")
        thing = " ".join([*command[1:at], command[at + 1]])
        print(f"already there, kept as it is: {thing}", file=sys.stderr)
        return True
    return result.returncode == 0


def _check(check: Check) -> None:
    """Raises ToolError (exit 78) when the read's answer refuses the plan; a read that fails
    tells nothing, and the run goes on."""
    print("+", shlex.join(check.command), flush=True)
    result = _gcloud(check.command, keep_output=True)
    sys.stderr.write(result.stderr)
    if result.returncode == 0 and (reason := check.refusal(result.stdout.strip())):
        raise ToolError(reason, EXIT_CONFIG)


def _account_unknown(command: Command, result: subprocess.CompletedProcess[str]) -> bool:
    return (
        bool(result.returncode)
        and "add-iam-policy-binding" in command
        and (UNKNOWN_ACCOUNT in result.stderr)
    )


def _already_there(command: Command) -> bool:
    describe = describe_for(command)
    return (
        describe is not None
        and not subprocess.run(
            describe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
    )


def _gcloud(command: Command, keep_output: bool = False) -> subprocess.CompletedProcess[str]:
    """Runs gcloud with its stderr kept (and its stdout too when `keep_output`)."""
    stdout = subprocess.PIPE if keep_output else None
    return subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True)
