"""A tiny keystone v3 client on urllib: the lab seeds and checks keystone through its real HTTP API.

stdlib only, so the lab needs no keystoneauth/openstacksdk next to the tool; loopback only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from scripts.lab.proc import LabError


@dataclass
class Response:
    """Status, headers and decoded JSON body (None if empty or not JSON) of one request."""

    status: int
    headers: dict[str, str]
    body: Any


def request(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP request; error statuses are returned, not raised, because tests assert on them."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, hdrs, raw = resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        status, hdrs, raw = exc.code, dict(exc.headers.items()), exc.read()
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
    return Response(status, {k.lower(): v for k, v in hdrs.items()}, decoded)


def password_auth(user: str, password: str, project: str | None = None, domain: str = "default") -> dict:
    """Body of ``POST /v3/auth/tokens`` for a password login, project-scoped if ``project`` is given."""
    auth: dict[str, Any] = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": user, "domain": {"id": domain}, "password": password}},
        }
    }
    if project:
        auth["scope"] = {"project": {"name": project, "domain": {"id": domain}}}
    return {"auth": auth}


def issue_token(base_url: str, user: str, password: str, project: str | None = None) -> Response:
    """``POST /v3/auth/tokens``; the token is in ``headers['x-subject-token']`` when status is 201."""
    return request("POST", f"{base_url}/auth/tokens", password_auth(user, password, project))


def get_token(base_url: str, user: str, password: str, project: str | None = None) -> str:
    """A token for ``user``, or LabError with keystone's answer."""
    resp = issue_token(base_url, user, password, project)
    if resp.status != 201 or "x-subject-token" not in resp.headers:
        raise LabError(f"token for {user!r} from {base_url}: HTTP {resp.status} {resp.body}")
    return resp.headers["x-subject-token"]


def call(method: str, url: str, token: str, body: Any = None, expect: tuple[int, ...] = (200, 201, 204),
         timeout: float = 30.0) -> Any:
    """An authenticated request that must succeed; returns the JSON body."""
    resp = request(method, url, body, token=token, timeout=timeout)
    if resp.status not in expect:
        raise LabError(f"{method} {url}: HTTP {resp.status} {resp.body}")
    return resp.body


# ---------------------------------------------------------------------- what every lab service registers
def find_or_create(url: str, token: str, path: str, name: str, body: dict[str, Any]) -> str:
    """The id of the ``path`` entity (roles, projects, ...) named *name*, made from *body* if missing."""
    found = call("GET", f"{url}/{path}?name={name}", token)[path]
    if found:
        return found[0]["id"]
    return call("POST", f"{url}/{path}", token, {path[:-1]: body})[path[:-1]]["id"]


def service_user(url: str, token: str, name: str, password: str, roles: tuple[str, ...] = ("admin",)) -> str:
    """A service's user with *roles* (made if missing) in project ``service`` (made if missing); its id."""
    project = find_or_create(url, token, "projects", "service", {"name": "service", "domain_id": "default"})
    user = call("POST", f"{url}/users", token, {"user": {"name": name, "domain_id": "default",
                                                         "password": password}})["user"]["id"]
    for role in roles:
        rid = find_or_create(url, token, "roles", role, {"name": role})
        call("PUT", f"{url}/projects/{project}/users/{user}/roles/{rid}", token)
    return user


def catalog_service(url: str, token: str, name: str, kind: str, endpoint: str, region: str = "RegionOne") -> str:
    """Service *name* of type *kind* in the catalog with public, internal and admin endpoints at *endpoint*."""
    sid = call("POST", f"{url}/services", token, {"service": {"name": name, "type": kind}})["service"]["id"]
    for interface in ("public", "internal", "admin"):
        call("POST", f"{url}/endpoints", token, {"endpoint": {
            "service_id": sid, "interface": interface, "url": endpoint, "region_id": region}})
    return sid
