"""`docker` as the README's command blocks meet it in tests/test_readme.py: the real docker CLI,
with what a block names rewritten so that blocks run side by side with other runs on a shared
engine and leave nothing behind. Run as `python readme_docker.py ARGS...`; in `docker run`:

- `--name X` becomes a name of this run's (PREFIX + X), which later commands (`logs X`,
  `kill -s HUP X`, `port X`, ...) are translated to;
- `-p [ADDRESS:]HOST:PORT` publishes PORT on any free loopback port;
- a named volume `-v NAME:PATH` becomes PREFIX + NAME;
- the README's image name, `dask-tls:dev`, is the image under test;
- a label marks the container as this run's.

`docker build -t IMAGE` tags a sibling of the image under test, so that a block's `make build` in
the copy of the checkout never replaces the image the rest of the suite tests. `docker compose`
runs docker-compose (Compose v1: what Debian has) under a project of this run's, its ports on any
free loopback port unless the block says otherwise. Each name, volume, tag and project is written
into STATE, from which the test removes them after the block.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

README_IMAGE = "dask-tls:dev"
CONTAINER_COMMANDS = {"logs", "stop", "rm", "kill", "exec", "inspect", "port", "restart", "wait",
                      "start", "top", "stats"}  # fmt: skip
NAMED_VOLUME = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]*)(:.*)")


class Run:
    def __init__(self) -> None:
        self.real = os.environ["README_DOCKER"]
        self.image = os.environ["README_IMAGE"]
        self.prefix = os.environ["README_PREFIX"]
        self.state = Path(os.environ["README_STATE"])

    def load(self, kind: str) -> dict[str, str]:
        path = self.state / f"{kind}.json"
        found: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        return found

    def remember(self, kind: str, key: str, value: str) -> str:
        known = self.load(kind)
        known[key] = value
        (self.state / f"{kind}.json").write_text(json.dumps(known))
        return value

    def run_options(self, args: list[str]) -> list[str]:
        """`docker run ARGS` rewritten up to the image (the README's or the one under test):
        names, published ports, named volumes; the image; its command as it is."""
        images = [i for i, arg in enumerate(args) if arg in (README_IMAGE, self.image)]
        end = images[0] if images else len(args)
        out = ["--label", f"dask-tls-readme={self.prefix}"]
        options = iter(args[:end])
        for arg in options:
            flag, _, inline = arg.partition("=")
            if flag in ("--name", "-p", "--publish", "-v", "--volume") and not inline:
                inline = next(options)
            if flag == "--name":
                out += ["--name", self.remember("containers", inline, self.prefix + inline)]
            elif flag in ("-p", "--publish"):
                out += ["-p", f"127.0.0.1::{inline.rsplit(':', 1)[-1]}"]
            elif flag in ("-v", "--volume") and (named := NAMED_VOLUME.fullmatch(inline)):
                volume = self.remember("volumes", named[1], self.prefix + named[1])
                out += ["-v", volume + named[2]]
            elif flag in ("-v", "--volume"):
                out += ["-v", inline]
            else:
                out.append(arg)
        return out + ([self.image, *args[end + 1 :]] if images else [])

    def build_options(self, args: list[str]) -> list[str]:
        out, options = [], iter(args)
        for arg in options:
            out.append(arg)
            if arg in ("-t", "--tag"):
                tag = next(options)
                out.append(self.remember("tags", tag, f"{tag}-{self.prefix}readme"))
        return out

    def compose(self, args: list[str]) -> None:
        """docker-compose under this run's project; the test removes its containers by label."""
        project = f"{self.prefix.replace('-', '')}readme"  # compose's names: [a-z0-9] only
        self.remember("projects", project, str(Path.cwd()))
        env = {"DASK_SCHEDULER_PORT": "127.0.0.1:0", "DASK_DASHBOARD_PORT": "127.0.0.1:0"}
        os.execvpe("docker-compose", ["docker-compose", "-p", project, *args],
                   {**env, **os.environ})  # fmt: skip

    def main(self, args: list[str]) -> None:
        if args[:1] == ["compose"]:
            self.compose(args[1:])
        if args[:1] in (["run"], ["create"]):
            args = [args[0], *self.run_options(args[1:])]
        elif args[:1] == ["build"]:
            args = ["build", *self.build_options(args[1:])]
        elif args[:1] and args[0] in CONTAINER_COMMANDS:
            names = self.load("containers")
            args = [args[0], *(names.get(arg, arg) for arg in args[1:])]
        os.execv(self.real, [self.real, *args])


if __name__ == "__main__":
    Run().main(sys.argv[1:])
