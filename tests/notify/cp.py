"""
Shared by the bootstrap tests: OMA CP documents as libwbxml reads and
writes them, and classic OMA DM devices in a store.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import MutableMapping
from typing import Any

from mdmd.notify.provisioning_doc import Characteristic, Parm, ProvisioningDoc
from mdmd.testing.devices import add_device
from mdmd.xmlparser import parse

XML2WBXML = shutil.which("xml2wbxml")
WBXML2XML = shutil.which("wbxml2xml")
#: The skip reason of tests that need libwbxml's tools.
NO_LIBWBXML = (
    None if XML2WBXML and WBXML2XML else "libwbxml2-utils (xml2wbxml, wbxml2xml) is not installed"
)

#: A 15-digit IMSI (MCC 262, MNC 01) and the MSISDN of the classic test device.
IMSI = "262011234567890"
MSISDN = "+491701234567"


def libwbxml(tool: str, flags: list[str], data: bytes) -> bytes:
    """
    Run C{xml2wbxml} or C{wbxml2xml} (its path) on C{data}; its output.
    """
    with tempfile.TemporaryDirectory(prefix="mdmd-cp-") as directory:
        source = os.path.join(directory, "in")
        target = os.path.join(directory, "out")
        with open(source, "wb") as f:
            f.write(data)
        done = subprocess.run([tool, *flags, "-o", target, source], capture_output=True, timeout=30)
        if done.returncode != 0:
            raise AssertionError(f"{tool} failed: {done.stdout!r} {done.stderr!r}")
        with open(target, "rb") as f:
            return f.read()


def _node(element: Any) -> Parm | Characteristic:
    if element.tag == "parm":
        return Parm(element.get("name"), element.get("value"))
    if element.tag != "characteristic":
        raise AssertionError(f"unexpected element {element.tag}")
    return Characteristic(element.get("type"), tuple(_node(child) for child in element))


def read_prov_xml(data: bytes) -> ProvisioningDoc:
    """
    A provisioning document in XML (libwbxml's output or ours) as the model.
    The DOCTYPE goes first: our one XML parser refuses DTDs.
    """
    root = parse(re.sub(rb"<!DOCTYPE[^>]*>", b"", data))
    if root.tag != "wap-provisioningdoc":
        raise AssertionError(f"not a provisioning document: {root.tag}")
    characteristics = []
    for child in root:
        node = _node(child)
        if not isinstance(node, Characteristic):
            raise AssertionError("a parm directly under wap-provisioningdoc")
        characteristics.append(node)
    return ProvisioningDoc(tuple(characteristics), root.get("version") or "")


def decoded_by_libwbxml(wbxml: bytes) -> ProvisioningDoc:
    """
    What libwbxml's wbxml2xml reads in WBXML bytes, as the model.
    """
    assert WBXML2XML is not None, NO_LIBWBXML
    return read_prov_xml(libwbxml(WBXML2XML, ["-m", "0"], wbxml))


def add_classic_device(
    root: MutableMapping[str, Any], device_id: str, msisdn: str = MSISDN, *, imsi: str = IMSI, **fields: Any
) -> None:
    """
    A unit of work: a classic OMA DM device (kind omadm) with the DM
    account of L{add_device}, an IMSI, and any other C{Device} fields given.
    """
    add_device(root, device_id, msisdn)
    device = root["devices"][device_id]
    device.kind = "omadm"
    device.imsi = imsi
    for name, value in fields.items():
        setattr(device, name, value)
