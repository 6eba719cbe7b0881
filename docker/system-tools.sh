#!/usr/bin/env bash
# `make test`, first: the system tools the suite needs beyond make and Python, and a Docker engine
# that answers. Missing tools are installed with apt-get when run as root on Debian; otherwise one
# line names their Debian packages and the command, and make test stops before anything runs.
# (`make unit` needs none of them.)
set -euo pipefail
docker=${DOCKER:-docker}

# a command on the PATH, the Debian package that has it; and what needs it
tools=(
  "$docker docker.io"                 # the engine and its client: every container test
  "debootstrap debootstrap"           # make build's own base image where no registry answers
  "docker-compose docker-compose"     # docker/compose.yaml (tests/test_multihost.py, the README)
  "cloud-init cloud-init"             # `cloud-init schema` of the GCE user-data
  "chromium chromium"                 # the dashboard in a browser (tests/test_security_browser.py)
  "pk12util libnss3-tools"            # and its certificate database
  "certutil libnss3-tools"
  "git git"                           # copies of this checkout; the .gitignore of certs new
)
missing=()
for entry in "${tools[@]}"; do
  read -r tool package <<<"$entry"
  command -v "$tool" >/dev/null || [[ " ${missing[*]} " == *" $package "* ]] || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "make test needs ${missing[*]} (Debian packages): sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing what make test needs: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Pythons apt cannot give (Debian has 3.11 alone): the client-version tests need 3.13.0 and a 3.11
# of another patch release than the image's, from pyenv
pythons=${PYENV_ROOT:-$HOME/.pyenv}/versions
if [ ! -x "$pythons/3.13.0/bin/python3" ] || ! compgen -G "$pythons/3.11.*/bin/python" >/dev/null; then
  echo "make test needs Python 3.13.0 and a Python 3.11 in $pythons:" \
    "pyenv install 3.13.0 3.11.7 (https://github.com/pyenv/pyenv)" >&2
  exit 1
fi

if ! "$docker" info >/dev/null 2>&1; then
  echo "make test needs a Docker engine, and none answers: start it (systemctl start docker, or" \
    "dockerd &, as .ci/run does)" >&2
  exit 1
fi
