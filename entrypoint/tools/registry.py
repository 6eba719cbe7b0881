"""Which Google repository an image is pulled from, read from its name: Artifact Registry
(`LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE`) or a Container Registry host
(`[REGION.]gcr.io/PROJECT/IMAGE`, served today by Artifact Registry's gcr.io repositories). A VM
pulls such an image with its service account (COS's `docker-credential-gcr`), which needs
`roles/artifactregistry.reader` on that repository. An image on another registry needs neither."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Container Registry's hosts: Artifact Registry's gcr.io repository of each, and its location
GCR_LOCATIONS = {"gcr.io": "us", "us.gcr.io": "us", "eu.gcr.io": "europe", "asia.gcr.io": "asia"}
ARTIFACT_REGISTRY_HOST = re.compile(r"(?P<location>[a-z][a-z0-9-]*[a-z0-9])-docker\.pkg\.dev")
PROJECT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
REPOSITORY_ID = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
FORMS = {
    "pkg.dev": "LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE[:TAG]",
    "gcr.io": "gcr.io/PROJECT/IMAGE[:TAG] (or us., eu., asia.gcr.io)",
}


@dataclass(frozen=True)
class Repository:
    host: str  # what docker pulls from, e.g. us-docker.pkg.dev
    project: str
    location: str
    name: str  # the repository's ID (for a gcr.io host: the host itself)


def google_repository(image: str) -> Repository | None:
    """The Artifact Registry repository `image` is pulled from; None for another registry.
    ValueError, saying the form expected, for a Google registry's image that names none."""
    first, _, path = image.partition("/")
    host = first.lower()
    if not path or not ("." in host or ":" in host or host == "localhost"):
        return None  # Docker Hub: its first part is a namespace, not a host
    parts = path.split("/")
    if host in GCR_LOCATIONS:
        repository = Repository(host, parts[0], GCR_LOCATIONS[host], host)
        return _checked(repository, image, "gcr.io", len(parts) >= 2 and all(parts))
    if host.endswith(".pkg.dev"):
        found = ARTIFACT_REGISTRY_HOST.fullmatch(host)
        if not found or len(parts) < 3 or not all(parts):
            raise ValueError(f"{image[:100]!r} is not {FORMS['pkg.dev']}")
        repository = Repository(host, parts[0], found["location"], parts[1])
        return _checked(repository, image, "pkg.dev", REPOSITORY_ID.fullmatch(parts[1]) is not None)
    return None


def _checked(repository: Repository, image: str, form: str, well_formed: bool) -> Repository:
    if not (well_formed and PROJECT_ID.fullmatch(repository.project)):
        raise ValueError(f"{image[:100]!r} is not {FORMS[form]}")
    return repository
