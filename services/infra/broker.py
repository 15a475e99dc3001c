"""Whether the new controller's RabbitMQ accepts the ``transport_url`` the services carry over.

The configs go to the new controller unchanged, so every ``transport_url`` in them (``[DEFAULT]``, the
notifications', or the Havana-era ``rabbit_*`` options) must work against the new broker before the
old controller stops: a wrong password, a missing vhost or missing permissions would otherwise show
only after the cut-over, as services that cannot talk RPC. Each URL's user, password, port and vhost
are tried on the new controller's broker (the address the plan gives, as this machine reaches it):
log in (AMQP 0-9-1 through py-amqp, the client under oslo.messaging's kombu), then what
oslo.messaging does with its permissions — declare a queue (configure), publish to it (write), get
from it (read). The queue is exclusive and auto-deleted: it ends with the connection. Nothing else
is changed; the password is never shown (``rabbit://user:***@host:port/vhost``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from services.infra.config import get_value
from services.steps import legacy_config

#: where a service's config names its message queue: (section, option)
OPTIONS = (("DEFAULT", "transport_url"), ("oslo_messaging_notifications", "transport_url"))
SCHEMES = ("rabbit", "amqp", "kombu+rabbit")
DEFAULT_PORT = 5672


@dataclass(frozen=True)
class Login:
    """One host entry of a transport_url, as the services would log in with it."""

    user: str
    password: str = field(repr=False)
    host: str
    port: int
    vhost: str
    #: where it was found: ``/etc/nova/nova.conf [DEFAULT] transport_url``
    where: str = ""

    @property
    def shown(self) -> str:
        vhost = "" if self.vhost == "/" else self.vhost
        return f"rabbit://{self.user}:***@{self.host}:{self.port}/{vhost}"


def logins(url: str, where: str = "") -> list[Login]:
    """The logins of ``rabbit://u:p@h1:5672,u2:p2@h2/vhost`` (one per host); [] for other transports."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        return []
    netloc, _, _ = parts.netloc.partition("?")
    vhost = unquote(parts.path[1:]) if parts.path not in ("", "/") else "/"
    out = []
    for entry in netloc.split(","):
        cred, _, hostport = entry.rpartition("@")
        user, _, password = cred.partition(":")
        host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 or hostport.startswith("[") \
            else (hostport, "", "")
        out.append(Login(unquote(user) or "guest", unquote(password) if cred else "guest", host.strip("[]"),
                         int(port) if port.isdigit() else DEFAULT_PORT, vhost, where))
    return out


def config_logins(read: Callable[[str], bytes | None], paths: Iterable[str]) -> list[Login]:
    """Every login the config files at *paths* name (*read* gives a file's bytes, None when absent)."""
    out: list[Login] = []
    for path in paths:
        data = read(path)
        if data is None:
            continue
        for section, option in OPTIONS:
            if url := get_value(data, section, option):
                out += logins(url, f"{path} [{section}] {option}")
        if get_value(data, "DEFAULT", "transport_url") is None and (url := legacy_config.transport_url(data)):
            out += logins(url, f"{path} [DEFAULT] rabbit_*")
    return out


def _fix(login: Login, problem: str) -> str:
    vh = login.vhost
    perms = f"rabbitmqctl set_permissions -p {vh} {login.user} '.*' '.*' '.*'"
    if problem == "login":
        return (f"on the new controller: `rabbitmqctl add_user {login.user} PASSWORD` (the password of "
                f"{login.where or 'the URL'}), or `rabbitmqctl change_password {login.user} PASSWORD`, then `{perms}`")
    if problem == "vhost":
        return f"on the new controller: `rabbitmqctl add_vhost {vh}`, then `{perms}`"
    if problem == "permissions":
        return f"on the new controller: `{perms}`"
    return "start rabbitmq-server on the new controller, or fix [amqp] broker in the plan"


def authenticate(login: Login, broker: str, timeout: float = 10.0) -> tuple[str, str] | None:
    """Try *login* on the broker at *broker* (``host`` or ``host:port``; the URL's port when none):
    None when the services could use it, else (what failed, the fix). Read-only but for an exclusive,
    auto-deleted queue that lives as long as the connection."""
    import amqp  # py-amqp: imported here, so every other command starts without it

    host, _, port = broker.rpartition(":") if broker.count(":") == 1 else (broker, "", "")
    address = f"{host}:{port or login.port}"
    who = f"{login.shown} (from {login.where}) on the new controller's broker {address}"
    conn = amqp.Connection(host=address, userid=login.user, password=login.password, virtual_host=login.vhost,
                           connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)
    try:
        try:
            conn.connect()
        except amqp.exceptions.AccessRefused:
            return f"{who}: user {login.user!r} cannot log in (no such user, or another password)", \
                _fix(login, "login")
        except amqp.exceptions.NotAllowed as exc:
            text = str(exc)
            if "not found" in text:
                return f"{who}: vhost {login.vhost!r} does not exist", _fix(login, "vhost")
            return f"{who}: user {login.user!r} may not use vhost {login.vhost!r}", _fix(login, "permissions")
        except (TimeoutError, OSError, amqp.exceptions.AMQPError) as exc:
            return f"{who}: cannot connect: {exc}", _fix(login, "connect")
        try:
            ch = conn.channel()
            queue = f"openstack-upgrade.check.{secrets.token_hex(4)}"
            ch.queue_declare(queue=queue, exclusive=True, auto_delete=True)
            ch.basic_publish(amqp.Message(b"openstack-upgrade check"), exchange="", routing_key=queue)
            ch.basic_get(queue=queue, no_ack=True)  # synchronous: a refused publish shows here at the latest
        except amqp.exceptions.AccessRefused as exc:
            return (f"{who}: user {login.user!r} lacks permissions on vhost {login.vhost!r} ({exc.reply_text})",
                    _fix(login, "permissions"))
        except (OSError, amqp.exceptions.AMQPError) as exc:
            return f"{who}: {exc}", _fix(login, "connect")
        return None
    finally:
        with contextlib.suppress(OSError, amqp.exceptions.AMQPError, AttributeError):
            conn.close()


def problems(logins_: Iterable[Login], broker: str) -> list[tuple[str, str]]:
    """(problem, fix) for every distinct login the broker refuses."""
    seen: dict[tuple[str, str, int, str], Login] = {}
    for lg in logins_:
        seen.setdefault((lg.user, lg.password, lg.port, lg.vhost), lg)
    return [p for lg in seen.values() if (p := authenticate(lg, broker)) is not None]
