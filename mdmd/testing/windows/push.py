"""
The push side of an emulated Windows device: the DMClient CSP's Push node.

Windows registers with WNS for the application whose package family name
the server sets (C{./Vendor/MSFT/DMClient/Provider/ID/Push/PFN}, in the
provisioning document or with Add/Replace), and reports the channel WNS
gave it in C{Push/ChannelURI} and how that went in C{Push/Status} (0
success, 1 invalid PFN, 4 no channel URI assigned, ...); both are read
only (Get). Until a PFN is set the Push node does not exist (Gets answer
404). L{PushNode} does this for the DM client of L{mdmd.testing.dmclient}
(one of its C{handlers}), registering with whatever C{register} stands for
WNS (L{mdmd.testing.wns.FakeWns.register}); L{PushNode.renew} is Windows
getting a new channel on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from mdmd.enroll.provisioning import Characteristic

from .provisioning import Enrollment

__all__ = ["PushNode"]

_NODE = re.compile(r"\./(?:Device/)?Vendor/MSFT/DMClient/Provider/(?P<provider>[^/]+)/Push/(?P<leaf>PFN|ChannelURI|Status)")
#: Push/Status values (Microsoft's DMClient CSP).
SUCCESS, INVALID_PFN, NO_CHANNEL = 0, 1, 4


@dataclass
class PushNode:
    """
    The Push node of one provider.

    @ivar register: WNS: a channel URI for a PFN (None: WNS is unreachable).
    """

    provider_id: str
    register: Callable[[str], str] | None = None
    pfn: str | None = None
    channel_uri: str = ""
    status: int = NO_CHANNEL

    @classmethod
    def from_enrollment(cls, enrollment: Enrollment, register: Callable[[str], str] | None = None) -> PushNode:
        """
        The node as the enrollment's provisioning document leaves it (with its PFN, if it sets one).
        """
        node = cls(enrollment.provider_id, register)
        provider = enrollment.document.get("DMClient", "Provider", enrollment.provider_id) or Characteristic("", (), ())
        push = provider.get("Push")
        pfn = push.parm("PFN") if push is not None else None
        if pfn is not None:
            node.set_pfn(pfn)
        return node

    def set_pfn(self, pfn: str) -> None:
        """
        What Windows does when given a PFN: register with WNS for it.
        """
        self.pfn = pfn
        if not pfn.strip():
            self.channel_uri, self.status = "", INVALID_PFN
        elif self.register is None:
            self.channel_uri, self.status = "", NO_CHANNEL
        else:
            self.channel_uri, self.status = self.register(pfn), SUCCESS

    def renew(self) -> str:
        """
        Ask WNS for a new channel (Windows does so before the old one expires); its URI.
        """
        if self.pfn is not None:
            self.set_pfn(self.pfn)
        return self.channel_uri

    # -- NodeHandler ----------------------------------------------------------------------

    def _leaf(self, uri: str) -> str | None:
        found = _NODE.fullmatch(uri)
        if found is None or unquote(found["provider"]) != self.provider_id:
            return None
        return found["leaf"]

    def owns(self, uri: str) -> bool:
        return self._leaf(uri) is not None

    def get(self, uri: str) -> str | None:
        if self.pfn is None:
            return None
        return {"PFN": self.pfn, "ChannelURI": self.channel_uri, "Status": str(self.status)}[self._leaf(uri) or ""]

    def set(self, uri: str, value: str) -> int:
        if self._leaf(uri) != "PFN":
            return 405  # ChannelURI and Status are read only
        self.set_pfn(value)
        return 200
