"""
Per-device variables in a profile: C{$DEVICE_ID}, C{${ENROLLED_USER}}, ...

A profile is uploaded once and sent to many devices; the values that differ
per device (its id, its user, its number) are written as variables and
expanded for each device when its commands are made. A variable the profile
names but mdmd does not know is an upload error; one a device has no value
for fails that device's step (with the reason), never silently sends "".

Syntax: C{$NAME} or C{${NAME}} (C{NAME}: letters, digits and C{_}, not
starting with a digit); C{$$} is a literal C{$}. A C{$} followed by anything
else is literal too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["VARIABLES", "UnknownVariable", "MissingValue", "names_in", "expand"]

#: Every variable a profile may use, and where its value comes from (for the docs and errors).
VARIABLES: Final[Mapping[str, str]] = {
    "DEVICE_ID": "the DeviceID (SyncHdr Source, ./DevInfo/DevId)",
    "ENROLLED_USER": "the user who enrolled the device (a UPN; Windows devices)",
    "MSISDN": "the device's phone number, as an operator set it",
    "IMSI": "the SIM's IMSI, as an operator set it",
    "HOSTNAME": "./DevDetail/Ext/Microsoft/DNSComputerName if read, else the enrollment's DeviceName",
    "DEVICE_NAME": "the DeviceName the device sent when it enrolled",
    "HW_DEV_ID": "the hardware id the device sent when it enrolled (HWDevID)",
    "SERVER_ID": "our server id for the device (its DM account's ServerID, else [enrollment] provider_id)",
    "OS_VERSION": "./DevDetail/SwV if read, else the enrollment's OSVersion",
    "MANUFACTURER": "./DevInfo/Man",
    "MODEL": "./DevInfo/Mod",
}

_REFERENCE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class UnknownVariable(ValueError):
    """
    A profile names a variable mdmd does not know.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown variable ${name} (known: {', '.join('$' + v for v in VARIABLES)}; $$ is a literal $)")
        self.name = name


@dataclass(frozen=True)
class MissingValue(Exception):
    """
    A device has no value for a variable its profile uses.
    """

    name: str

    def __str__(self) -> str:
        return f"the device has no value for ${self.name} ({VARIABLES[self.name]})"


def names_in(text: str) -> frozenset[str]:
    """
    The variables C{text} refers to.

    @raise UnknownVariable: for the first one mdmd does not know.
    """
    found = set()
    for match in _REFERENCE.finditer(text):
        name = match.group(1) or match.group(2)
        if name is None:
            continue
        if name not in VARIABLES:
            raise UnknownVariable(name)
        found.add(name)
    return frozenset(found)


def expand(text: str, values: Mapping[str, str | None]) -> str:
    """
    C{text} with every variable replaced by its value in C{values}.

    @raise MissingValue: if a variable has no (or an empty) value.
    @raise UnknownVariable: if C{text} names a variable mdmd does not know.
    """
    if "$" not in text:
        return text

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name is None:
            return "$"
        if name not in VARIABLES:
            raise UnknownVariable(name)
        found = values.get(name)
        if not found:
            raise MissingValue(name)
        return found

    return _REFERENCE.sub(value, text)
