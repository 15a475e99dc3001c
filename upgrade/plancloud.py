"""The plan's ``[cloud]`` table: the run's last step, which waits until the cloud reports to the new controller.

    [cloud]                                 # leave the table out: the run does not wait for the cloud
    timeout = 300                           # seconds the cloud may take to report after the cut-over
    auth_url = "http://198.51.100.10:5000/v3"   # the new controller's keystone, as this machine reaches it
    username = "admin"
    password_env = "OS_PASSWORD"            # or password = "..." (keep the plan 0600)
    project = "admin"

Opt-in, like ``[amqp]``: what the step waits for (every ``nova-compute``, neutron agent and ``cinder-volume``
of the new controller's databases) must run against the new controller for a run to finish.
"""

from __future__ import annotations

from services.fleet.cloudcheck import Auth, CloudSettings
from services.infra.settings import ServiceSettings
from upgrade.planreader import Reader

KEYS = {"timeout", "auth_url", "username", "password", "password_env", "project", "user_domain", "project_domain",
        "interface"}
INTERFACES = ("public", "internal", "admin")


def _name(r: Reader, key: str, default: str) -> str:
    v = r.get(key, str, default)
    if not v.strip() or v != v.strip():
        raise r.err(key, f"is {v!r}; expected a keystone name without surrounding spaces, e.g. {default!r}")
    return v


def cloud(r: Reader, settings: dict[str, ServiceSettings], computes: tuple[str, ...]) -> CloudSettings | None:
    """``[cloud]``, or None when the plan has no such table. *settings* name the databases to read (the
    services of the run); *computes*: the plan's compute hosts as nova names them."""
    if "cloud" not in r.table:
        return None
    c = r.sub("cloud")
    c.unknown(KEYS)
    timeout = c.get("timeout", int, 300)
    if not 1 <= timeout <= 86400:
        raise c.err("timeout", f"is {timeout}; expected 1-86400 seconds")
    auth = None
    url = c.get("auth_url", str, "")
    if url:
        if not url.startswith(("http://", "https://")) or any(ch.isspace() for ch in url):
            raise c.err("auth_url", f"is {url!r}; expected the new controller's keystone URL, like "
                                    "\"http://198.51.100.10:5000/v3\"")
        password = c.secret("password")
        if not password:
            raise c.err("password", "is missing; with `cloud.auth_url` give the admin password (or password_env)")
        interface = c.get("interface", str, "public")
        if interface not in INTERFACES:
            raise c.err("interface", f"is {interface!r}; expected one of {', '.join(INTERFACES)}")
        auth = Auth(auth_url=url, username=_name(c, "username", "admin"), password=password,
                    project=_name(c, "project", "admin"), user_domain=_name(c, "user_domain", "Default"),
                    project_domain=_name(c, "project_domain", "Default"), interface=interface)
    nova = settings.get("nova")
    with_nova = bool(computes) or "nova" in settings or "nova-unpin" in settings
    return CloudSettings(timeout=float(timeout), computes=computes,
                         nova_db=(nova.db_name if nova else "nova") if with_nova else "",
                         neutron_db=settings["neutron"].db_name if "neutron" in settings else "",
                         cinder_db=settings["cinder"].db_name if "cinder" in settings else "", auth=auth)
