"""
The OMA DM endpoint (C{/ManagementServer/MDM.svc}): a thin adapter around a check-in.

Each POST is decoded with the codec its Content-Type names, then one unit of
work, L{mdmd.dm.checkin.exchange}, runs the message through the session
engine and the store, committed in a group with the other messages waiting
(L{StoreService.transact_grouped}). The answer goes back, in the request's
encoding, only after that group's commit.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mdmd.dm.checkin import DMSettings, exchange
from mdmd.pki.tls import peer_certificate
from mdmd.site import AsyncResource, MdmdRequest, Response
from mdmd.store.runner import StoreService
from mdmd.syncml.codec import CONTENT_TYPES, codec_for_content_type

__all__ = ["ManagementResource"]

log = Logger()


class ManagementResource(AsyncResource):
    """
    POST only: SyncML in XML or WBXML (DM or DS media type), answered in the same encoding and type.
    """

    def __init__(
        self,
        store: StoreService,
        clock: IReactorTime,
        settings: DMSettings = DMSettings(),
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__()
        self._store = store
        self._clock = clock
        self._settings = settings
        self._random = random

    async def handle_POST(self, request: MdmdRequest) -> Response:
        codec = codec_for_content_type(request.getHeader(b"content-type"))
        if codec is None:
            return Response(f"expected one of {', '.join(CONTENT_TYPES)}\n".encode("ascii"), code=415)
        body = request.content.read()
        message = codec.decode(body)
        request.device_id = message.header.source.loc_uri
        hmac_header = request.getHeader(b"x-syncml-hmac")
        result = await self._store.transact_grouped(
            exchange,
            peer_certificate(request),
            message,
            codec,
            body,
            hmac_header.decode("latin-1") if hmac_header else None,
            self._clock.seconds(),
            self._settings,
            self._random,
        )
        for text, fields in result.notes:
            log.info(text, device_id=result.device_id, **fields)
        return Response(
            result.body,
            content_type=codec.content_type.encode("ascii"),
            headers=tuple((k.encode("ascii"), v.encode("latin-1")) for k, v in result.headers),
        )
