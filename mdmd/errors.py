"""
Errors that carry their answer.

Every error a peer (a device, an SMSC, an operator's client) can cause is a
L{PeerError} subclass that declares, once, how each surface answers it: the
HTTP status (h11's C{error_status_hint}), the MS-MDE2 SOAP fault subcode, the
SyncML status and the SMPP command_status (h2's C{error_code}). Adapters read
these declarations in one mapping each (L{mdmd.site.AsyncResource.answer_error}
and its overrides) instead of writing an answer per handler, the way Klein's
C{handle_errors} maps an exception class to its answer once.

The two families at every boundary stay distinct: a L{PeerError} is the
other side's mistake, answered in protocol terms and logged at info level;
L{Busy} is a transient condition of ours (the store gave up on conflicts),
answered "try again" (503 with Retry-After); anything else that escapes is
our bug: logged with its traceback, answered with a bare 500 (or the
protocol's internal-error code), never with the traceback.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["AnsweredError", "PeerError", "NotFound", "Conflict", "Busy"]

#: MS-MDE2 2.2.10 subcodes used as defaults below.
SOAP_MESSAGE_FORMAT = "s:MessageFormat"
SOAP_ENROLLMENT_SERVER = "s:EnrollmentServer"
SOAP_INTERNAL_SERVICE_FAULT = "a:InternalServiceFault"

#: SMPP 3.4 command_status values used as defaults below.
ESME_RSYSERR = 0x08
ESME_RINVCMDLEN = 0x02


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


class PeerError(AnsweredError):
    """
    The peer sent something the protocol (or the API) does not allow.

    Subclasses live next to the codec or engine that detects the problem.
    """

    http_status = 400
    soap_subcode = SOAP_MESSAGE_FORMAT
    syncml_status = 400
    smpp_status = ESME_RINVCMDLEN


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
    retry_after = 5
