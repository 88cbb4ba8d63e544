"""
The two error families at every protocol boundary.

A L{PeerError} means the other side broke the protocol: it is answered in the
protocol's own terms (a SOAP fault, a SyncML status, an SMPP generic_nack, an
HTTP 4xx) and logged at info level. Anything else that escapes an engine means
we broke: it is logged with its traceback and the peer gets a bare 500 or the
protocol's "internal error" code, never the traceback.
"""

from __future__ import annotations


class PeerError(Exception):
    """
    The peer sent something the protocol does not allow.

    Subclasses live next to the codec or engine that detects the problem and
    may carry the protocol-specific code to answer with.
    """
