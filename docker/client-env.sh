#!/usr/bin/env bash
# `make client`: a client environment that matches the image. The same lock, exported with hashes,
# with the same groups, installed by the same script as the image build; on a Python of the image's
# version; plus a dask config in the environment itself (<venv>/etc/dask/, which dask reads) that
# points plain Client("tls://HOST:8786") at the certificates and makes dashboard links https.
# Variables: IMAGE, DOCKER, POETRY, DEPENDENCY_GROUPS (as the image), VENV (.client), CERTS (certs),
# CLIENT (client: certs/client.pem and client-key.pem), PYTHON (an interpreter to use; optional).
set -euo pipefail
docker=${DOCKER:-docker} image=${IMAGE:?} poetry=${POETRY:-poetry} groups=${DEPENDENCY_GROUPS-complete,cluster}
venv=${VENV:-.client} certs=${CERTS:-certs} client=${CLIENT:-client}
export PIP_QUIET=${PIP_QUIET:-1}  # pip's progress bars would bury the result
version='import platform; print(platform.python_version())'

wanted=$("$docker" run --rm --entrypoint python "$image" -c "$version")
# the image's port (entrypoint/contract.py), for the example below
eval "$("$docker" run --rm --entrypoint python "$image" -m entrypoint.contract)"
minor=${wanted%.*}

if [ -n "${PYTHON:-}" ]; then
  candidates=("$PYTHON")
else
  mapfile -t candidates < <(which -a "python$minor" python3 2>/dev/null || true)
  candidates+=("/usr/bin/python$minor" "/usr/local/bin/python$minor")
  candidates+=("${PYENV_ROOT:-$HOME/.pyenv}/versions/$minor".*/bin/python)
fi
exact='' same_minor='' same_minor_version=''
for candidate in "${candidates[@]}"; do
  found=$("$candidate" -c "$version" 2>/dev/null) || continue  # pyenv shims fail when inactive
  if [ "$found" = "$wanted" ]; then exact=$candidate; break; fi
  if [ "${found%.*}" = "$minor" ] && [ -z "$same_minor" ]; then
    same_minor=$candidate same_minor_version=$found
  fi
done
python=${exact:-$same_minor} python_version=${exact:+$wanted}
python_version=${python_version:-$same_minor_version}
if [ -z "$python" ]; then
  echo "no Python $minor found (the image runs $wanted; tried: ${candidates[*]}): install one," \
    "or pass PYTHON=/path/to/python$minor" >&2
  exit 1
fi
if [ -z "$exact" ]; then
  echo "warning: $python is Python $same_minor_version, the image $wanted: it works, but" \
    "client.get_versions(check=True) will flag the patch difference (PYTHON=... to pick another)" >&2
fi

"$python" -m venv --clear "$venv"
"$(dirname "$0")/install-locked.sh" "$poetry" . "$venv" "$groups"
"$venv/bin/python" -m entrypoint client-config --certs "$certs" --client "$client" \
  --out "$venv/etc/dask/dask-tls.yaml" >/dev/null

cat <<MSG
client environment $venv: Python $python_version, the image's packages (groups: main${groups:+,$groups})
dask config $venv/etc/dask/dask-tls.yaml: mutual TLS with $certs/$client.pem, dashboard links in https
use it (source $venv/bin/activate, or $venv/bin/python):
  from distributed import Client
  client = Client("tls://localhost:$SCHEDULER_PORT")       # or tls://HOST:$SCHEDULER_PORT
  client.get_versions(check=True)               # the same versions as the cluster
  client.dashboard_link
MSG
