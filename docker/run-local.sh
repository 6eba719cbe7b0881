#!/usr/bin/env bash
# `make run`: start the image as a local cluster and print how to connect.
# CERT/KEY (and CA) name your own PEM files; unset, the dev set made by `make certs` in certs/ is used.
# NUM_WORKERS, THREADS_PER_WORKER, MEMORY_PER_WORKER: the image's variables (empty: its defaults).
# PUBLISH: the host address the two ports are published on (127.0.0.1; empty: every interface);
# HOST_SCHEDULER_PORT, HOST_DASHBOARD_PORT: the host's ports (the image's own; 0: any free one).
# RUN_OPTIONS: more `docker run` options, split as the shell splits them (--memory 8g --cpus 4).
set -euo pipefail
docker=${DOCKER:-docker} image=${IMAGE:?} name=${NAME:-dask-tls} certs=${CERTS:-certs}
publish=${PUBLISH-127.0.0.1}
eval "extra=(${RUN_OPTIONS:-})"
sizes=()
for var in NUM_WORKERS THREADS_PER_WORKER MEMORY_PER_WORKER; do
  [ -z "${!var:-}" ] || sizes+=(-e "$var=${!var}")
done
# the image's ports, file names and scratch directory, from the image itself (entrypoint/contract.py)
eval "$("$docker" run --rm --entrypoint /opt/venv/bin/python "$image" -m entrypoint.contract)"
if [ -n "${CERT:-}" ]; then
  cert=$CERT key=${KEY:?KEY: the key file for CERT} ca=${CA:-}
  client_cert=$cert client_key=$key client_ca=${CA:-$CERT}  # the seed's setup: one cert for all
else
  cert=$certs/$CLUSTER_PEM key=$certs/$CLUSTER_KEY_PEM ca=$certs/$CA_PEM
  client_cert=$certs/$CLIENT_PEM client_key=$certs/$CLIENT_KEY_PEM client_ca=$certs/$CA_PEM
fi
ca_args=()
[ -z "$ca" ] || ca_args=(-e DASK_CLUSTER_CA="$(cat "$ca")")

"$docker" rm -f "$name" >/dev/null 2>&1 || true
# spilled data on a disk volume (kept for the next run), not in /tmp: that tmpfs is RAM
"$docker" run -d --name "$name" --restart unless-stopped --read-only --tmpfs /tmp \
  -v "$name-scratch:$SCRATCH" --health-interval 2s \
  -p "${publish:+$publish:}${HOST_SCHEDULER_PORT:-$SCHEDULER_PORT}:$SCHEDULER_PORT" \
  -p "${publish:+$publish:}${HOST_DASHBOARD_PORT:-$DASHBOARD_PORT}:$DASHBOARD_PORT" "${sizes[@]}" \
  -e DASK_CLUSTER_CERT="$(cat "$cert")" -e DASK_CLUSTER_KEY="$(cat "$key")" "${ca_args[@]}" \
  "${extra[@]}" "$image" >/dev/null

for _ in $(seq 120); do
  status=$("$docker" inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$name")
  case "$status" in
    "running healthy") break ;;
    running*) sleep 1 ;;
    *) "$docker" logs --tail 20 "$name"; echo "the cluster did not start ($status)" >&2; exit 1 ;;
  esac
done
[ "$status" = "running healthy" ] || { "$docker" logs --tail 20 "$name"; echo "not healthy after 120 s" >&2; exit 1; }

# the host's ports as published (port 0 takes any free one): the first line's, "ADDRESS:PORT"
published() { local lines; lines=$("$docker" port "$name" "$1/tcp"); lines=${lines%%$'\n'*}; echo "${lines##*:}"; }
port=$(published "$SCHEDULER_PORT") dashboard=$(published "$DASHBOARD_PORT")
echo "cluster '$name' is up; scheduler tls://localhost:$port, dashboard https://localhost:$dashboard" \
  "(published on ${publish:-every interface})"
if [ -z "${CERT:-}" ]; then
  cat <<MSG
a client environment with the image's Python and packages, set up for $client_cert:
  make client, then in .client/bin/python:
  from distributed import Client
  client = Client("tls://localhost:$port")
or, from any environment with dask/distributed of the image's version:
MSG
else
  echo "connect from an environment with dask/distributed of the image's version:"
fi
cat <<MSG
  from distributed import Client
  from distributed.security import Security
  sec = Security(tls_ca_file="$client_ca", tls_client_cert="$client_cert",
                 tls_client_key="$client_key", require_encryption=True)
  client = Client("tls://localhost:$port", security=sec)
logs: $docker logs -f $name     stop: make stop
MSG
