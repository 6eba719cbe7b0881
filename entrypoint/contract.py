"""The image's contract, each fact written once: its ports, its user, the variables it reads, the
files `certs new` writes and the files of the private directory. Python imports them from here;
`python -m entrypoint.contract` prints them as shell assignments for docker/*.sh; the Dockerfile and
the YAML files, which can import nothing, are checked against them (tests/test_contract.py).
Exit codes live in `errors`."""

from __future__ import annotations

import shlex

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
UID = 10001  # the image's user (and its group); the scratch space is also group 0's
SCRATCH = "/scratch"  # the workers' spill directory, a volume of the image

# The variables the entrypoint reads (dask's own DASK_* ones aside).
CERT_VAR = "DASK_CLUSTER_CERT"
KEY_VAR = "DASK_CLUSTER_KEY"
CA_VAR = "DASK_CLUSTER_CA"
PASSPHRASE_VAR = "DASK_CLUSTER_KEY_PASSPHRASE"  # noqa: S105 (a variable name)
CRL_VAR = "DASK_CLUSTER_CRL"  # the CA's revoked certificates (not secret; read as the others)
SECRET_VARS = (CERT_VAR, KEY_VAR, CA_VAR, PASSPHRASE_VAR, CRL_VAR)  # each also as NAME_FILE
SECRET_PREFIX = "DASK_CLUSTER_"  # noqa: S105 (the secrets' variables start so)
WORKERS_VAR = "NUM_WORKERS"
THREADS_VAR = "THREADS_PER_WORKER"
MEMORY_VAR = "MEMORY_PER_WORKER"
DASHBOARD_VAR = "DASHBOARD_PROTOCOL"
HTTP_CLIENT_CERT_VAR = "HTTP_CLIENT_CERT"
ROLE_VAR = "DASK_ROLE"
SCHEDULER_ADDRESS_VAR = "DASK_SCHEDULER_ADDRESS"
SCRATCH_VAR = "DASK_TEMPORARY_DIRECTORY"  # dask's `temporary-directory`
DRAIN_VAR = "DRAIN_TIMEOUT"  # DASK_ROLE=worker: how long a stop may spend moving results away
# DASK_ROLE=scheduler: the managed instance group of worker VMs it sizes (`gce --autoscale`)
AUTOSCALE_VAR = "AUTOSCALE"  # MIN:MAX worker VMs
MAX_VMS = 1000  # the most worker VMs it sizes: deleteInstances takes 1000 instances at most
AUTOSCALE_GROUP_VAR = "AUTOSCALE_GROUP"  # projects/P/zones/Z/instanceGroupManagers/G
AUTOSCALE_WORKERS_VAR = "AUTOSCALE_WORKERS_PER_VM"  # the NUM_WORKERS of each worker VM
# Where the autoscaler finds Google, as Google's own clients let a user say: google-auth's
# variable for the metadata server (host[:port]), gcloud's for the Compute API's root URL.
METADATA_HOST_VAR = "GCE_METADATA_HOST"
COMPUTE_API_VAR = "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE"
METADATA_HOST = "metadata.google.internal"
COMPUTE_API = "https://compute.googleapis.com/compute/v1/"


def vm_bounds(text: str) -> tuple[int, int]:
    """MIN:MAX worker VMs (AUTOSCALE, `gce --autoscale`): 0 <= MIN <= MAX, 1 <= MAX <= MAX_VMS.
    ValueError says which way `text` is not that: "not MIN:MAX" or "out of range"."""
    bounds = text.split(":")
    if len(bounds) != 2 or not all(b.isdigit() and b.isascii() for b in bounds):
        raise ValueError("not MIN:MAX")
    minimum, maximum = (int(b) for b in bounds)
    if not (0 <= minimum <= maximum and 1 <= maximum <= MAX_VMS):
        raise ValueError("out of range")
    return minimum, maximum


def file_var(name: str) -> str:
    """The variable naming a file that holds `name`'s value: DASK_CLUSTER_KEY_FILE."""
    return f"{name}_FILE"


# What `certs new` writes into its folder.
CA_PEM, CA_KEY_PEM = "ca.pem", "ca-key.pem"
CLUSTER_PEM, CLUSTER_KEY_PEM = "cluster.pem", "cluster-key.pem"
CLUSTER_ENV = "cluster.env"  # the three PEMs in single-line base64, for --env-file
SECRETS_DIR = "secrets"  # cert.pem, key.pem, ca.pem: for a mounted secret (*_FILE)
SECRETS_MOUNT = "/run/secrets/dask-tls"  # where the tools' printed commands mount that folder
CRL_PEM = "crl.pem"  # what `certs revoke` writes (and secrets/crl.pem)


DEFAULT_CLIENT = "client"  # the client certificate `certs new` issues unless told otherwise


def client_files(client: str) -> tuple[str, str, str]:
    """A client's certificate, key and PKCS#12 bundle (for a browser)."""
    return f"{client}.pem", f"{client}-key.pem", f"{client}.p12"


# The private directory's files (tmpfs), as the processes read them; also the names of the
# secret files in SECRETS_DIR.
CERT_FILE, KEY_FILE, CA_FILE, PLAN_FILE = "cert.pem", "key.pem", "ca.pem", "plan.json"
CRL_FILE = "crl.pem"

# The extendedKeyUsage that makes a client certificate a viewer's: the dashboard (its pages,
# websockets, /metrics) and nothing else. An OID of our own under 2.25 (ITU-T X.667), so no CA puts
# it in a certificate by accident; `certs new|renew --viewer NAME` issues such certificates, and any
# CA can: `extendedKeyUsage = clientAuth, 2.25.1765471409` (README). Not a whole 128-bit UUID: Go's
# x509 (Prometheus) refuses a certificate with an OID arc over 2^31 ("invalid extended key usages").
VIEWER_OID = "2.25.1765471409"


def shell() -> str:
    """The facts the shell scripts need, as assignments for `eval`."""
    facts = {
        "SCHEDULER_PORT": SCHEDULER_PORT,
        "DASHBOARD_PORT": DASHBOARD_PORT,
        "IMAGE_UID": UID,
        "SCRATCH": SCRATCH,
        "CA_PEM": CA_PEM,
        "CLUSTER_PEM": CLUSTER_PEM,
        "CLUSTER_KEY_PEM": CLUSTER_KEY_PEM,
        "CLIENT_PEM": client_files(DEFAULT_CLIENT)[0],
        "CLIENT_KEY_PEM": client_files(DEFAULT_CLIENT)[1],
    }
    return "\n".join(f"{name}={shlex.quote(str(value))}" for name, value in facts.items())


if __name__ == "__main__":
    print(shell())
