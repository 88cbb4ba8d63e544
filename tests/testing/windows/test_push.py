"""
Tests for L{mdmd.testing.windows.push}: the emulated DMClient Push node
answers as Windows' does.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.enroll.provisioning import Characteristic
from mdmd.testing.windows.push import PushNode

BASE = "./Vendor/MSFT/DMClient/Provider/MS%20DM%20Server/Push/"


def registrar() -> Any:
    issued: list[str] = []

    def register(pfn: str) -> str:
        issued.append(pfn)
        return f"https://db5p.notify.windows.com/w/?token={len(issued)}"

    return register, issued


class PushNodeTests(SynchronousTestCase):
    def test_no_pfn_no_node(self) -> None:
        """
        Until a PFN is set the Push node does not exist: its nodes read as absent (404).
        """
        node = PushNode("MS DM Server", registrar()[0])
        self.assertTrue(node.owns(BASE + "ChannelURI"))
        self.assertEqual((node.get(BASE + "ChannelURI"), node.get(BASE + "Status")), (None, None))

    def test_pfn_registers(self) -> None:
        """
        Setting the PFN registers with WNS: ChannelURI is the channel, Status 0;
        ChannelURI and Status are read only (405); ./Device/ paths are the same nodes.
        """
        register, issued = registrar()
        node = PushNode("MS DM Server", register)
        self.assertEqual(node.set(BASE + "PFN", "Contoso.Push_1"), 200)
        self.assertEqual(issued, ["Contoso.Push_1"])
        device_form = BASE.replace("./", "./Device/")
        self.assertEqual(node.get(device_form + "ChannelURI"), "https://db5p.notify.windows.com/w/?token=1")
        self.assertEqual((node.get(BASE + "Status"), node.get(BASE + "PFN")), ("0", "Contoso.Push_1"))
        self.assertEqual(node.set(BASE + "ChannelURI", "x"), 405)
        self.assertEqual(node.renew(), "https://db5p.notify.windows.com/w/?token=2")

    def test_failures(self) -> None:
        """
        An empty PFN is Status 1 (invalid PFN); no WNS to register with is Status 4 (no channel).
        """
        node = PushNode("MS DM Server", registrar()[0])
        node.set(BASE + "PFN", " ")
        self.assertEqual((node.get(BASE + "ChannelURI"), node.get(BASE + "Status")), ("", "1"))
        offline = PushNode("MS DM Server", None)
        offline.set(BASE + "PFN", "Contoso.Push_1")
        self.assertEqual(offline.get(BASE + "Status"), "4")

    def test_other_providers(self) -> None:
        """
        Another provider's Push node is not this one's.
        """
        node = PushNode("MS DM Server")
        self.assertFalse(node.owns("./Vendor/MSFT/DMClient/Provider/Intune/Push/PFN"))
        self.assertFalse(node.owns("./DevDetail/SwV"))

    def test_from_enrollment(self) -> None:
        """
        A PFN in the provisioning document is set as the device applies it.
        """
        register, issued = registrar()
        push = Characteristic("Push", (("PFN", "Contoso.Push_1", "string"),), ())
        provider = Characteristic("MS DM Server", (), (push,))
        document = Characteristic(
            "wap-provisioningdoc", (), (Characteristic("DMClient", (), (Characteristic("Provider", (), (provider,)),)),)
        )
        enrollment: Any = SimpleNamespace(provider_id="MS DM Server", document=document)
        node = PushNode.from_enrollment(enrollment, register)
        self.assertEqual((node.pfn, issued), ("Contoso.Push_1", ["Contoso.Push_1"]))
        bare: Any = SimpleNamespace(provider_id="MS DM Server", document=Characteristic("wap-provisioningdoc", (), ()))
        self.assertIsNone(PushNode.from_enrollment(bare, register).pfn)
