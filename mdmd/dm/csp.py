"""
What mdmd knows about particular CSPs and management objects: the commands
of device actions, and how a setting a profile made is undone.

Every command is built through L{mdmd.dm.commands.parse_spec}, so the OMA DM
and Windows rules apply to it as to an operator's command. Facts (from
Microsoft's CSP reference and OMA's LAWMO specification):

  - RemoteWipe CSP (C{./Device/Vendor/MSFT/RemoteWipe}, Exec): C{doWipe}
    resets the device; C{doWipeProtected} (Windows 10 1703, build 15063) also
    cleans the drive and may leave some devices unable to boot;
    C{doWipePersistProvisionedData} keeps the provisioning data and applies it
    again after the reset. The status says whether the device accepted the Exec.
  - Reboot CSP: Exec C{./Device/Vendor/MSFT/Reboot/RebootNow} (Format null,
    Windows 10 1607, build 14393) reboots within five minutes, at the end of
    the session.
  - RemoteLock CSP: Exec C{./Device/Vendor/MSFT/RemoteLock/Lock} (Format
    null, Windows 10 1511, build 10586; not on the Home editions) locks the
    screen if a PIN is set, and is answered 405 if none is. Windows has no
    partial lock and no remote unlock.
  - OMA LAWMO (management object C{urn:oma:mo:oma-lawmo:1.0}, found at
    C{./LAWMO} on the devices that have it): Exec on
    C{Operations/FullyLock}, C{PartiallyLock}, C{UnLock}, C{Wipe} and
    C{FactoryReset}; C{State} reads 10 (fully locked), 20 (partially
    locked) or 30 (unlocked). The device may report the outcome later in a
    Generic Alert of type C{urn:oma:at:lawmo:1.0:OperationComplete}.
  - Policy CSP (C{./Device/Vendor/MSFT/Policy/Config/...},
    C{./User/Vendor/MSFT/Policy/Config/...}): every policy node takes Add,
    Replace, Get and Delete; a Delete removes the MDM's value and Windows
    applies the policy's default (or another source's value) again.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from mdmd.dm.commands import CommandSpec, parse_spec
from mdmd.errors import Conflict

__all__ = [
    "DeviceAction",
    "UnsupportedAction",
    "ActionTarget",
    "action_command",
    "action_target",
    "Reversal",
    "reversal_of",
    "reversals",
    "is_policy",
    "windows_build",
    "LAWMO_ROOT",
    "LAWMO_STATE",
    "LAWMO_ALERT",
    "HOME_EDITIONS",
]


class DeviceAction(enum.Enum):
    """
    What an operator may ask a device to do (C{mdmctl device wipe|lock|unlock|reboot}).
    """

    WIPE = "wipe"
    #: Windows: doWipeProtected
    WIPE_PROTECTED = "wipe-protected"
    #: Windows: doWipePersistProvisionedData
    WIPE_KEEP_PROVISIONING = "wipe-keep-provisioning"
    #: LAWMO FactoryReset
    FACTORY_RESET = "factory-reset"
    LOCK = "lock"
    #: LAWMO PartiallyLock
    PARTIAL_LOCK = "partial-lock"
    UNLOCK = "unlock"
    REBOOT = "reboot"


class UnsupportedAction(Conflict):
    """
    The device cannot do what was asked (its kind, its version or its edition does not support it).
    """


@dataclass(frozen=True)
class ActionTarget:
    """
    The node an action executes, and what a device must have for it.
    """

    node: str
    #: the Meta Format of the Exec (the node's DDF format), or None
    format: str | None = None
    #: the oldest Windows build (major, minor, build) that has the node
    min_build: tuple[int, ...] | None = None
    #: what that build is called
    since: str = ""


#: Windows (CSP nodes). Absent actions are refused with the reason in L{_WINDOWS_REFUSALS}.
_WINDOWS: Final[Mapping[DeviceAction, ActionTarget]] = {
    DeviceAction.WIPE: ActionTarget("./Device/Vendor/MSFT/RemoteWipe/doWipe"),
    DeviceAction.WIPE_PROTECTED: ActionTarget(
        "./Device/Vendor/MSFT/RemoteWipe/doWipeProtected", None, (10, 0, 15063), "Windows 10 1703"
    ),
    DeviceAction.WIPE_KEEP_PROVISIONING: ActionTarget("./Device/Vendor/MSFT/RemoteWipe/doWipePersistProvisionedData"),
    DeviceAction.REBOOT: ActionTarget("./Device/Vendor/MSFT/Reboot/RebootNow", "null", (10, 0, 14393), "Windows 10 1607"),
    DeviceAction.LOCK: ActionTarget("./Device/Vendor/MSFT/RemoteLock/Lock", "null", (10, 0, 10586), "Windows 10 1511"),
}
_WINDOWS_REFUSALS: Final[Mapping[DeviceAction, str]] = {
    DeviceAction.PARTIAL_LOCK: "Windows has no partial lock (the RemoteLock CSP locks the whole screen)",
    DeviceAction.UNLOCK: "Windows has no remote unlock (the user unlocks with their PIN)",
    DeviceAction.FACTORY_RESET: "a Windows device is reset by a wipe (mdmctl device wipe)",
}

#: Where classic devices keep the LAWMO management object, its state node and its completion alert type.
LAWMO_ROOT: Final = "./LAWMO"
LAWMO_STATE: Final = LAWMO_ROOT + "/State"
LAWMO_ALERT: Final = "urn:oma:at:lawmo:1.0:OperationComplete"

#: Classic OMA DM devices (LAWMO operations).
_LAWMO: Final[Mapping[DeviceAction, ActionTarget]] = {
    DeviceAction.WIPE: ActionTarget(LAWMO_ROOT + "/Operations/Wipe"),
    DeviceAction.FACTORY_RESET: ActionTarget(LAWMO_ROOT + "/Operations/FactoryReset"),
    DeviceAction.LOCK: ActionTarget(LAWMO_ROOT + "/Operations/FullyLock"),
    DeviceAction.PARTIAL_LOCK: ActionTarget(LAWMO_ROOT + "/Operations/PartiallyLock"),
    DeviceAction.UNLOCK: ActionTarget(LAWMO_ROOT + "/Operations/UnLock"),
}
_LAWMO_REFUSALS: Final[Mapping[DeviceAction, str]] = {
    DeviceAction.REBOOT: "OMA DM has no standard management object for a reboot",
    DeviceAction.WIPE_PROTECTED: "doWipeProtected is a Windows RemoteWipe node; LAWMO has Wipe and FactoryReset",
    DeviceAction.WIPE_KEEP_PROVISIONING: "doWipePersistProvisionedData is a Windows RemoteWipe node; LAWMO has Wipe and FactoryReset",
}

#: The OSEdition numbers (as the enrollment reports them) of the Windows Home
#: editions, which the RemoteLock CSP does not support: Core N, Core country
#: specific, Core single language, Core (0x62 to 0x65).
HOME_EDITIONS: Final = frozenset({"98", "99", "100", "101"})

_BUILD = re.compile(r"(\d+(?:\.\d+)*)")


def windows_build(version: str | None) -> tuple[int, ...] | None:
    """
    The leading dotted numbers of a Windows version (C{10.0.26100.2314}), or None.
    """
    if not version:
        return None
    match = _BUILD.match(version.strip())
    return None if match is None else tuple(int(part) for part in match.group(1).split("."))


def _at_least(found: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    width = max(len(found), len(wanted))
    return found + (0,) * (width - len(found)) >= wanted + (0,) * (width - len(wanted))


def action_target(
    action: DeviceAction,
    kind: str,
    *,
    windows_version: str | None = None,
    windows_edition: str = "",
    lawmo_reported: bool = False,
) -> ActionTarget:
    """
    The node C{action} executes on a device of C{kind} (C{windows} or C{omadm}).

    @param windows_version: the device's C{./DevDetail/SwV} (or the
        enrollment's OSVersion); an action that needs a newer build is refused,
        and so is one that needs a known build when it is not known.
    @param windows_edition: the enrollment's OSEdition (decimal).
    @param lawmo_reported: whether the classic device reported the LAWMO
        object (a value of C{./LAWMO/State} in its inventory).
    @raise UnsupportedAction: saying why the device cannot do it.
    """
    if kind == "windows":
        refusal = _WINDOWS_REFUSALS.get(action)
        if refusal is not None:
            raise UnsupportedAction(f"cannot {action.value} a Windows device: {refusal}")
        target = _WINDOWS[action]
        if target.min_build is not None:
            build = windows_build(windows_version)
            if build is None:
                raise UnsupportedAction(
                    f"cannot {action.value}: {target.node} needs {target.since} or later, and the "
                    "device's Windows version is not known (read ./DevDetail/SwV first)"
                )
            if not _at_least(build, target.min_build):
                raise UnsupportedAction(
                    f"cannot {action.value}: {target.node} needs {target.since} (build "
                    f"{'.'.join(map(str, target.min_build))}) or later; the device runs {windows_version}"
                )
        if action is DeviceAction.LOCK and windows_edition in HOME_EDITIONS:
            raise UnsupportedAction(
                "cannot lock: the RemoteLock CSP is not supported on Windows Home editions "
                f"(OSEdition {windows_edition})"
            )
        return target
    refusal = _LAWMO_REFUSALS.get(action)
    if refusal is not None:
        raise UnsupportedAction(f"cannot {action.value} a classic OMA DM device: {refusal}")
    if not lawmo_reported:
        raise UnsupportedAction(
            f"cannot {action.value}: the device has not reported the LAWMO management object "
            f"(no value of {LAWMO_STATE} read yet: mdmctl cmd DEVICE get {LAWMO_STATE}, or add it "
            "to [dm] inventory_omadm)"
        )
    return _LAWMO[action]


def action_command(
    action: DeviceAction,
    kind: str,
    *,
    windows_version: str | None = None,
    windows_edition: str = "",
    lawmo_reported: bool = False,
) -> CommandSpec:
    """
    The Exec that carries out C{action} on a device (the facts as for L{action_target}).

    @raise UnsupportedAction: if the device cannot do it.
    """
    target = action_target(
        action, kind, windows_version=windows_version, windows_edition=windows_edition, lawmo_reported=lawmo_reported
    )
    raw: dict[str, str] = {"verb": "Exec", "target": target.node}
    if target.format is not None:
        raw["format"] = target.format
    return parse_spec(raw)


# -- undoing what a profile set ------------------------------------------------------------

_POLICY_PREFIXES: Final = (
    "./device/vendor/msft/policy/config/",
    "./vendor/msft/policy/config/",
    "./user/vendor/msft/policy/config/",
)


def is_policy(target: str) -> bool:
    """
    Whether C{target} is a Policy CSP setting (a Delete of it drops the MDM's value).
    """
    return target.lower().startswith(_POLICY_PREFIXES)


@dataclass(frozen=True)
class Reversal:
    """
    How one item of a profile is undone: by a Delete of C{target}, or not at all (C{reason} says why).
    """

    target: str
    delete: bool
    reason: str


def reversal_of(verb: str, target: str) -> Reversal:
    """
    How to undo C{verb} on C{target}: what the profile's removal sends, or why it sends nothing.
    """
    if verb == "Add":
        return Reversal(target, True, "a node the profile added is deleted")
    if verb == "Replace" and is_policy(target):
        return Reversal(target, True, "a Policy CSP value is deleted: Windows applies the policy's default again")
    if verb == "Replace":
        return Reversal(
            target, False, "left as set: mdmd does not know the value it replaced, and this CSP has no default to return to"
        )
    if verb == "Exec":
        return Reversal(target, False, "an action (Exec) cannot be undone")
    if verb == "Delete":
        return Reversal(target, False, "a deleted node cannot be restored")
    return Reversal(target, False, f"{verb} is not undone")


def _under(target: str, ancestors: Sequence[str]) -> bool:
    return any(target.startswith(a + "/") for a in ancestors)


def reversals(spec: CommandSpec) -> tuple[Reversal, ...]:
    """
    How to undo every item of C{spec} (members of Atomic and Sequence
    included), last first; a Delete is left out when a Delete of one of its
    ancestors already removes it.
    """
    found = [reversal_of(command.verb, item.target) for command in spec.walk() for item in command.items]
    deleted = [r.target for r in found if r.delete]
    kept: list[Reversal] = []
    for reversal in reversed(found):
        if reversal.delete and (_under(reversal.target, deleted) or any(k.target == reversal.target and k.delete for k in kept)):
            continue
        kept.append(reversal)
    return tuple(kept)
