"""A tiny glance v2 client on urllib: the lab makes its images through the real glance API and
reads them back the way an operator checks an upgrade (list, then download and compare).

stdlib only, like ``ksapi``; loopback only. Image bytes are streamed, never held whole.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from typing import Any

from scripts.lab import ksapi
from scripts.lab.proc import LabError

CHUNK = 1 << 16


def create(url: str, token: str, name: str, data: bytes, **props: str) -> dict[str, Any]:
    """POST /v2/images then PUT its file; returns the image as glance shows it once active."""
    body = {"name": name, "disk_format": "raw", "container_format": "bare", "visibility": "public", **props}
    image = ksapi.call("POST", f"{url}/v2/images", token, body)
    req = urllib.request.Request(f"{url}/v2/images/{image['id']}/file", data=data, method="PUT")
    req.add_header("Content-Type", "application/octet-stream")
    req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            if resp.status != 204:
                raise LabError(f"upload of image {name!r}: HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        raise LabError(f"upload of image {name!r}: HTTP {exc.code} {exc.read()[:300]!r}") from None
    return ksapi.call("GET", f"{url}/v2/images/{image['id']}", token)


def images(url: str, token: str) -> list[dict[str, Any]]:
    """Every image glance lists (GET /v2/images), sorted by id."""
    return sorted(ksapi.call("GET", f"{url}/v2/images?limit=1000", token)["images"], key=lambda i: i["id"])


def download_md5(url: str, token: str, image_id: str) -> tuple[int, str]:
    """GET /v2/images/ID/file: (HTTP status, md5 of the bytes served); md5 is what glance's own
    ``checksum`` field holds, so the two can be compared."""
    req = urllib.request.Request(f"{url}/v2/images/{image_id}/file")
    req.add_header("X-Auth-Token", token)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            while chunk := resp.read(CHUNK):
                digest.update(chunk)
            return resp.status, digest.hexdigest()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
