"""Whether a controller starts a service at boot, and turning that off and back on, by its own means.

After the switchover the old controller must not take its services back by itself (a reboot, a
configuration-management run starting what is enabled): every unit the run stopped there is
disabled and masked. Revert puts back exactly what was there, from the state recorded before.

- systemd (and the ``template`` control, which speaks its verbs): ``systemctl is-enabled`` says the
  state (exit 0 only for ``enabled``); ``disable`` then ``mask`` (a masked unit cannot even be
  started by hand or as a dependency); undo ``unmask`` then ``enable`` — each only if it changed.
- sysvinit: ``chkconfig UNIT`` / ``chkconfig UNIT off|on`` where chkconfig exists (RDO), else
  ``update-rc.d UNIT disable|enable`` (Debian), its state read from the ``/etc/rc?.d`` links.
"""

from __future__ import annotations

from services.infra.host import check, command_text
from services.infra.settings import Side
from statemachine.step import StepError

ENABLED, DISABLED, MASKED = "enabled", "disabled", "masked"


def _sysv_tool(side: Side) -> str:
    res = side.host.run(["sh", "-c", "command -v chkconfig || command -v update-rc.d"], timeout=60)
    tool = res.stdout.strip().rsplit("/", 1)[-1]
    if res.rc != 0 or tool not in ("chkconfig", "update-rc.d"):
        raise StepError(f"{side.host.name} has neither chkconfig nor update-rc.d: cannot keep its sysvinit services "
                        "from starting at boot — install one, or set service_control in the plan",
                        host=side.host.name)
    return tool


def state(side: Side, unit: str) -> str:
    """``enabled``, ``disabled``, ``masked`` or what else systemctl prints (``static``, ``indirect``...)."""
    if side.control.kind == "sysvinit":
        if _sysv_tool(side) == "chkconfig":
            res = side.host.run(["chkconfig", unit], timeout=60)
            return ENABLED if res.rc == 0 else DISABLED
        res = side.host.run(["sh", "-c", 'ls /etc/rc[2345].d/ | grep -qx "S[0-9][0-9]$1"', "sh", unit], timeout=60)
        return ENABLED if res.rc == 0 else DISABLED
    argv = side.control.argv("is-enabled", unit)
    res = side.host.run(argv, timeout=60)
    word = (res.stdout.strip().splitlines() or [""])[-1].strip()
    if res.rc == 0:
        return word or ENABLED
    if not word:
        raise StepError(f"cannot tell whether {unit} starts at boot on {side.host.name}: `{command_text(argv)}` "
                        f"exited {res.rc} and said nothing — fix the service control settings in the plan",
                        host=side.host.name, output=res.output)
    return word


def _act(side: Side, action: str, unit: str) -> str:
    if side.control.kind == "sysvinit":
        tool = _sysv_tool(side)
        argv = ["chkconfig", unit, "on" if action == "enable" else "off"] if tool == "chkconfig" \
            else ["update-rc.d", unit, action]
    else:
        argv = side.control.argv(action, unit)
    check(side.host, argv, f"{action} {unit}", timeout=120)
    return command_text(argv)


def disable(side: Side, unit: str, before: str) -> list[str]:
    """Disable (and mask, where the manager can) *unit*, whose recorded state was *before*; the actions
    taken, for the journal and for :func:`restore`."""
    done = []
    if before not in (DISABLED, MASKED):
        _act(side, "disable", unit)
        done.append("disable")
    if side.control.kind != "sysvinit" and before != MASKED:
        _act(side, "mask", unit)
        done.append("mask")
    return done


def restore(side: Side, unit: str, before: str) -> list[str]:
    """Put *unit* back to its recorded state *before*, from whatever state it is in now (idempotent)."""
    now = state(side, unit)
    done = []
    if now == MASKED and before != MASKED:
        _act(side, "unmask", unit)
        done.append("unmask")
        now = state(side, unit)
    if before not in (DISABLED, MASKED) and now in (DISABLED, MASKED):
        _act(side, "enable", unit)
        done.append("enable")
    return done
