#!/usr/bin/env bash
# `make run`: start the image as a local cluster and print how to connect.
# CERT/KEY (and CA) name your own PEM files; unset, the dev set made by `make certs` in certs/ is used.
set -euo pipefail
docker=${DOCKER:-docker} image=${IMAGE:?} name=${NAME:-dask-tls} workers=${NUM_WORKERS:-2}
certs=${CERTS:-certs}
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
  -v "$name-scratch:$SCRATCH" --health-interval 2s -p "$SCHEDULER_PORT:$SCHEDULER_PORT" \
  -p "$DASHBOARD_PORT:$DASHBOARD_PORT" -e NUM_WORKERS="$workers" \
  -e DASK_CLUSTER_CERT="$(cat "$cert")" -e DASK_CLUSTER_KEY="$(cat "$key")" "${ca_args[@]}" \
  "$image" >/dev/null

for _ in $(seq 60); do
  status=$("$docker" inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$name")
  case "$status" in
    "running healthy") break ;;
    running*) sleep 1 ;;
    *) "$docker" logs --tail 20 "$name"; echo "the cluster did not start ($status)" >&2; exit 1 ;;
  esac
done
[ "$status" = "running healthy" ] || { "$docker" logs --tail 20 "$name"; echo "not healthy after 60 s" >&2; exit 1; }

echo "cluster '$name' is up: $workers workers; scheduler tls://localhost:$SCHEDULER_PORT," \
  "dashboard https://localhost:$DASHBOARD_PORT"
if [ -z "${CERT:-}" ]; then
  cat <<MSG
a client environment with the image's Python and packages, set up for $client_cert:
  make client, then in .client/bin/python:
  from distributed import Client
  client = Client("tls://localhost:$SCHEDULER_PORT")
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
  client = Client("tls://localhost:$SCHEDULER_PORT", security=sec)
logs: $docker logs -f $name     stop: make stop
MSG
