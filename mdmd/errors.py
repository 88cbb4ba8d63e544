"""
Errors that carry their answer.

Every error a peer (a device, an SMSC, an operator's client) can cause is a
L{PeerError} subclass that declares, once, how each surface answers it: the
HTTP status (h11's C{error_status_hint}), the MS-MDE2 SOAP fault subcode, the
SyncML status and the SMPP command_status (h2's C{error_code}). Adapters read
these declarations in one mapping each (L{mdmd.site.AsyncResource.answer_error}
and the body each resource renders) instead of writing an answer per handler,
the way Klein's C{handle_errors} maps an exception class to its answer once.

The two families at every boundary stay distinct: a L{PeerError} is the
other side's mistake, answered in protocol terms and logged at info level;
L{Busy} is a transient condition of ours (the store gave up on conflicts),
answered "try again" (503 with Retry-After) and logged as a warning; anything
else that escapes is our bug: logged with its traceback, answered as
L{InternalError} (a bare 500, or the protocol's internal-error code), never
with the traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AnsweredError",
    "PeerError",
    "NotFound",
    "Conflict",
    "Busy",
    "InternalError",
    "answer_text",
]

#: MS-MDE2 2.2.10 fault subcodes.
SOAP_MESSAGE_FORMAT = "s:MessageFormat"
SOAP_AUTHENTICATION = "s:Authentication"
SOAP_AUTHORIZATION = "s:Authorization"
SOAP_CERTIFICATE_REQUEST = "s:CertificateRequest"
SOAP_ENROLLMENT_SERVER = "s:EnrollmentServer"
SOAP_INTERNAL_SERVICE_FAULT = "a:InternalServiceFault"
SOAP_INVALID_SECURITY = "a:InvalidSecurity"

#: SMPP 3.4 command_status values used as defaults below (the codec's
#: L{mdmd.notify.smpp_pdu.Status} cannot be imported here: it imports us).
ESME_RINVCMDLEN = 0x02
ESME_RSYSERR = 0x08
ESME_RX_T_APPN = 0x64


class AnsweredError(Exception):
    """
    An error with a declared answer on every surface it can reach.

    Subclasses override the class attributes; instances never change them,
    so an adapter can look the answer up from the class alone.
    """

    #: the HTTP status of the response (admin API, DM endpoint, enrollment pages)
    http_status: ClassVar[int] = 500
    #: the MS-MDE2 fault subcode when it ends an enrollment (SOAP) request
    soap_subcode: ClassVar[str] = SOAP_INTERNAL_SERVICE_FAULT
    #: the SyncML status when it is answered inside a DM session
    syncml_status: ClassVar[int] = 500
    #: the SMPP command_status when it is answered on an SMPP link
    smpp_status: ClassVar[int] = ESME_RSYSERR
    #: seconds after which a client may try again (sent as Retry-After), if any
    retry_after: ClassVar[int | None] = None
    #: what the peer is told instead of the error's own message, which
    #: describes our internals; None for an error whose message is for the
    #: peer (every L{PeerError}: it names the peer's mistake)
    public_message: ClassVar[str | None] = "internal server error; the details are in the server's log"

    @property
    def details(self) -> dict[str, Any]:
        """
        More for the peer than the message: fields the admin API adds to its JSON answer.
        """
        return {}


class PeerError(AnsweredError):
    """
    The peer sent something the protocol (or the API) does not allow.

    Subclasses live next to the codec or engine that detects the problem.
    """

    http_status = 400
    soap_subcode = SOAP_MESSAGE_FORMAT
    syncml_status = 400
    smpp_status = ESME_RINVCMDLEN
    public_message = None


class NotFound(PeerError):
    """
    A lookup by a name the peer gave found nothing (a device, a user, a certificate, ...).
    """

    http_status = 404
    syncml_status = 404


class Conflict(PeerError):
    """
    The request is well formed but contradicts the current state (it already exists, ...).
    """

    http_status = 409
    syncml_status = 409


class Busy(AnsweredError):
    """
    We cannot do this now (the store kept conflicting with concurrent writers): try again.

    Not the peer's fault and not a bug: answered 503 with Retry-After on
    every HTTP surface, C{s:EnrollmentServer} for enrollment, and logged as a
    warning without a traceback.
    """

    http_status = 503
    soap_subcode = SOAP_ENROLLMENT_SERVER
    syncml_status = 503
    smpp_status = ESME_RX_T_APPN
    retry_after = 5
    public_message = "the server is busy; try again later"


class InternalError(AnsweredError):
    """
    What the peer is told in place of an exception nobody declared: ours, a
    bug, logged with its traceback. Never raised; adapters answer it.
    """


def answer_text(error: AnsweredError) -> str:
    """
    The message the peer gets for C{error}: a peer error's own, or its class's public one.
    """
    return str(error) if error.public_message is None else error.public_message
