"""Grammars of the plan values that reach a command line, an SQL statement or a host.

A plan is input, and a value that reaches an argv must never be read as an option there
(``host = "ssh://-oProxyCommand=CMD"`` would make ``ssh`` run CMD) or change the meaning of a
statement (a database name with a backtick). Each function returns ``None`` for a good value,
or what is expected instead, for the plan loader to put into its message (file, key, value, fix).
The grammars are strict on purpose: they accept what real deployments name things, nothing that
needs quoting.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

#: a DNS name or an ssh_config alias: labels of letters, digits, ``_`` and ``-``, never a leading ``-``
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                       r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")
#: a login name (POSIX portable, as useradd takes it)
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
#: a systemd unit or init script name (``openstack-nova-api``, ``httpd``, ``neutron@dhcp.service``)
_UNIT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@:-]{0,254}$")
#: a MariaDB/MySQL database name that needs no quoting beyond the backticks the tool adds
_DB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_$-]{0,63}$")
#: a network interface name (the kernel's IFNAMSIZ is 16 with the NUL)
_DEVICE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,14}$")
#: a DB account name for CREATE USER / GRANT (the server allows 80 characters)
_DB_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.$-]{0,79}$")
#: a MySQL host pattern of a grant: an address, a name, ``%`` and ``_`` wildcards, a netmask
_GRANT_HOST = re.compile(r"^[A-Za-z0-9_%:.*/-]{1,255}$")
#: an LVM volume group (lvm's own rule: [A-Za-z0-9+_.-], not starting with '-')
_VG = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$")
#: a service's project name as a catalog or a daemon names it (``swift``, ``cinder-backup``)
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
#: characters that have no place in any plan value (a line break would start a new option in a
#: config or option file, a NUL ends a C string early)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _grammar(pattern: re.Pattern[str], expected: str) -> Callable[[str], str | None]:
    """A check of one value against *pattern*: None when it matches, else *expected* for the message."""
    def check(value: str) -> str | None:
        return None if pattern.match(value) else expected
    return check


def host(value: str) -> str | None:
    """A host name, an ssh_config alias, or an IPv4/IPv6 address."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if _HOSTNAME.match(value):
        return None
    return "a host name (letters, digits, '-', '_' and dots, not starting with '-') or an IP address"


user = _grammar(_USER, "a login name (letters, digits, '.', '_' and '-', not starting with '-' or '.')")


unit = _grammar(
    _UNIT, "a unit name like \"openstack-keystone\" (letters, digits, '.', '_', '@', ':' and '-', not starting "
    "with '-')")


db_name = _grammar(
    _DB_NAME, "a database name like \"keystone\" or \"nova_api\" (letters, digits, '_', '$' and '-', at most 64, "
    "not starting with '-')")


db_user = _grammar(
    _DB_USER, "a DB account name like \"keystone\" (letters, digits, '.', '_', '$' and '-', at most 80, not "
    "starting with '-')")


service_name = _grammar(
    _SERVICE_NAME, "a service name like \"swift\" or \"cinder-backup\" (lowercase letters, digits, '_' and '-', "
    "starting with a letter)")


def ignore_reason(value: str) -> str | None:
    """Why the plan leaves a service the source runs alone: said in words, so the next reader knows."""
    if value.strip() and not control(value):
        return None
    return "a reason in words (not empty, one line), e.g. \"swift stays on its own storage nodes\""


def grant_host(value: str) -> str | None:
    if _GRANT_HOST.match(value) and not value.startswith("-"):
        return None
    return "a MySQL host pattern like \"%\", \"localhost\" or \"10.0.0.%\""


def owner(value: str) -> str | None:
    """``USER:GROUP`` for ``chown``: two login names (or numeric ids)."""
    u, sep, g = value.partition(":")
    if sep and user(u) is None and user(g) is None:
        return None
    return "USER:GROUP, two names like \"keystone:keystone\" (letters, digits, '.', '_' and '-', not starting " \
           "with '-')"


device = _grammar(
    _DEVICE, "an interface name like \"eth0\" (at most 15 letters, digits, '.', '_', ':', '@' and '-', not "
    "starting with '-')")


def device_path(value: str) -> str | None:
    """A block device (``/dev/...``): absolute, so never an option of ``dd`` or ``lvcreate``."""
    if value.startswith("/") and ".." not in value.split("/") and not control(value) and " " not in value:
        return None
    return "an absolute device path like \"/dev/cinder-volumes/volume-1\" (no spaces, no '..')"


volume_group = _grammar(
    _VG, "an LVM volume group name like \"cinder-volumes\" (letters, digits, '+', '_', '.' and '-', not "
    "starting with '-')")


def relative_path(value: str) -> str | None:
    """A path below a controller's directory: relative, without ``..``, never an option."""
    parts = value.split("/")
    if value and not value.startswith(("/", "-")) and ".." not in parts and not control(value):
        return None
    return "a path relative to the controller's directory, without '..', not starting with '-' or '/'"


def control(value: str) -> bool:
    """True if *value* holds a control character (line break, NUL, escape...)."""
    return bool(_CONTROL.search(value))
