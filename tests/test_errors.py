"""
Tests for L{mdmd.errors}: every error a peer can cause is answered as its
class declares, on every HTTP surface (the admin API, the DM endpoint, the
SOAP enrollment endpoints), by the one mapping in L{mdmd.site.AsyncResource}.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyChannel

import mdmd
from mdmd import errors
from mdmd.admin.api import AdminAPI, AdminToken
from mdmd.desired.profiles import InvalidProfile
from mdmd.devices.registration import ImportRefused, RowProblem
from mdmd.dm.resource import ManagementResource
from mdmd.enroll import soap
from mdmd.enroll.resource import SoapEndpoint
from mdmd.enroll.soap import SoapFault, SoapRequest
from mdmd.errors import AnsweredError, Busy, PeerError, answer_text
from mdmd.notify.smpp_pdu import PduError, Status
from mdmd.pki.authority import CAService
from mdmd.site import AsyncResource, MdmdRequest, Response
from mdmd.store.runner import ConflictRetriesExhausted, StoreService
from mdmd.syncml.codec import ChunkError
from mdmd.syncml.codes import StatusCode
from mdmd.xmlparser import parse

from .logs import logged_events

#: A SOAP request the endpoint under test accepts (no Action: any operation).
ENVELOPE = f'<s:Envelope xmlns:s="{soap.SOAP12}"><s:Body><Probe/></s:Body></s:Envelope>'.encode()


def _import_all() -> None:
    for module in pkgutil.walk_packages(mdmd.__path__, "mdmd."):
        importlib.import_module(module.name)


def answered_error_classes() -> list[type[AnsweredError]]:
    """
    Every L{AnsweredError} subclass in mdmd, found by walking C{__subclasses__}.
    """
    _import_all()
    found: list[type[AnsweredError]] = []

    def walk(cls: type[AnsweredError]) -> Iterator[type[AnsweredError]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    for cls in walk(AnsweredError):
        if cls.__module__.startswith("mdmd.") and cls not in found:
            found.append(cls)
    return found


#: Errors made of structured problems rather than a message, with an example of each.
STRUCTURED: dict[type[AnsweredError], Any] = {
    ImportRefused: lambda cls: cls([RowProblem(0, "detail-42", "bad row")]),
    InvalidProfile: lambda cls: cls(["line 1: detail-42"]),
}


def instance(cls: type[AnsweredError]) -> AnsweredError:
    """
    An instance of C{cls} with a recognisable message (some take two arguments).
    """
    for base, make in STRUCTURED.items():
        if issubclass(cls, base):
            return make(cls)
    error = cls("detail-42")
    try:
        str(error)
    except IndexError:  # e.g. UnknownCommand names a device and a number
        error = cls("detail-42", 7)
    return error


@dataclass(frozen=True)
class Reply:
    """
    What a resource answered: the status, the response headers and the body bytes.
    """

    code: int
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.getRawHeaders(name)
        return None if values is None else values[0]


def render(
    resource: AsyncResource, path: bytes, method: bytes = b"POST", headers: dict[bytes, bytes] | None = None
) -> Reply:
    """
    Send C{ENVELOPE} to C{resource} (the handlers here never wait).
    """
    channel = DummyChannel()
    request = MdmdRequest(cast(HTTPChannel, channel))  # a stand-in: Request only uses part of it
    request.method = method
    request.uri = request.path = path
    request.clientproto = b"HTTP/1.1"
    request.content = BytesIO(ENVELOPE)
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    resource.render(request)
    assert request.finished
    written = cast(Any, channel).transport.written.getvalue()
    return Reply(request.code, request.responseHeaders, written.partition(b"\r\n\r\n")[2])


class RaisingAdminAPI(AdminAPI):
    """
    The admin API whose status route raises the error under test.
    """

    error: BaseException = RuntimeError("unset")

    async def status(self, request: Request) -> tuple[int, Any]:
        raise self.error


class RaisingManagementResource(ManagementResource):
    """
    The DM endpoint whose POST raises the error under test.
    """

    error: BaseException = RuntimeError("unset")

    async def handle_POST(self, request: Request) -> Response:
        raise self.error


class Surfaces(SynchronousTestCase):
    """
    The three HTTP surfaces, each with a handler that raises C{self.error}.
    """

    def setUp(self) -> None:
        self.events = logged_events(self)
        directory = self.mktemp()
        os.makedirs(directory)
        self.token = AdminToken(os.path.join(directory, "admin.token"))
        self.token.ensure()
        self.error: BaseException = RuntimeError("unset")

    def admin(self, error: BaseException) -> Reply:
        api = RaisingAdminAPI(
            self.token, cast(StoreService, None), cast(CAService, None), cast(Any, None), Clock()
        )
        api.error = error
        return render(api, b"/v1/status", b"GET", {b"authorization": b"Bearer " + self.token.value})

    def dm(self, error: BaseException) -> Reply:
        resource = RaisingManagementResource(cast(StoreService, None), Clock())
        resource.error = error
        return render(resource, b"/ManagementServer/MDM.svc")

    def enrollment(self, error: BaseException) -> Reply:
        async def operation(request: SoapRequest, http: Request, activity_id: str) -> bytes:
            raise error

        endpoint = SoapEndpoint("test", "urn:test", "urn:test-response", operation)
        return render(
            endpoint, b"/EnrollmentServer/Test.svc", headers={b"content-type": b"application/soap+xml"}
        )

    def fault_of(self, request: Reply) -> tuple[str, str, str | None]:
        """
        The subcode, reason and ErrorType of the SOAP fault answered.
        """
        body = soap.child(parse(request.body), "Body")
        assert body is not None
        (payload,) = body
        self.assertEqual(soap.local(payload), "Fault")
        subcode = soap.text(soap.child(soap.child(soap.child(payload, "Code"), "Subcode"), "Value"))
        reason = soap.text(soap.child(soap.child(payload, "Reason"), "Text"))
        detail = soap.child(soap.child(payload, "Detail"), "DeviceEnrollmentServiceError")
        return subcode, reason, soap.text(soap.child(detail, "ErrorType")) or None

    def logged(self, error: AnsweredError) -> None:
        """
        C{error} was logged once without a traceback: a peer's at info, ours as a warning.
        """
        lines = [e for e in self.events if e.get("reason") == str(error)]
        self.assertEqual(len(lines), 1, [e.get("log_format") for e in self.events])
        expected = LogLevel.info if isinstance(error, PeerError) else LogLevel.warn
        self.assertEqual((lines[0]["log_level"], lines[0].get("log_failure")), (expected, None))
        self.events.clear()


class DeclaredAnswerTests(Surfaces):
    def test_classes_found(self) -> None:
        """
        The walk finds the errors of every layer, the store's "busy" included.
        """
        names = {cls.__name__ for cls in answered_error_classes()}
        for name in (
            "UnknownDevice", "UnknownUser", "UnknownCertificate", "UnknownPush", "UnknownCommand",
            "UserExists", "ClientCertificateRefused", "WBXMLDecodeError", "PduError",
            "AuthenticationFault", "ApiError", "ConflictRetriesExhausted", "MalformedXML",
        ):
            self.assertIn(name, names)

    def test_lookups_are_not_key_errors(self) -> None:
        """
        A failed lookup is a L{NotFound} (404), never a C{KeyError} that a
        dictionary miss elsewhere could be mistaken for.
        """
        for cls in answered_error_classes():
            self.assertFalse(issubclass(cls, LookupError), cls)
            if cls.__name__.startswith("Unknown"):
                self.assertTrue(issubclass(cls, errors.NotFound), cls)
                self.assertEqual(cls.http_status, 404)

    def test_admin_api(self) -> None:
        """
        The admin API answers every error with its declared status, Retry-After
        when it declares one, and a JSON body carrying the message.
        """
        for cls in answered_error_classes():
            error = instance(cls)
            request = self.admin(error)
            self.assertEqual(request.code, cls.http_status, cls)
            self.assertEqual(request.header(b"content-type"), b"application/json", cls)
            expected: dict[str, Any] = {"error": answer_text(error), **error.details}
            if cls.retry_after is not None:
                expected["retry_after"] = cls.retry_after
            self.assertEqual(json.loads(request.body), expected, cls)
            self.assertEqual(request.header(b"retry-after"), _retry_after(cls), cls)
            self.logged(error)

    def test_dm_endpoint(self) -> None:
        """
        The DM endpoint answers every error with its declared status (403 for
        refusals, 415 for undecodable WBXML, ...) and the message as text.
        """
        for cls in answered_error_classes():
            error = instance(cls)
            request = self.dm(error)
            self.assertEqual(request.code, cls.http_status, cls)
            self.assertEqual(request.body, f"{answer_text(error)}\n".encode(), cls)
            self.assertEqual(request.header(b"retry-after"), _retry_after(cls), cls)
            self.logged(error)
        self.assertEqual(self.dm(errors_named("ClientCertificateRefused")("no")).code, 403)
        self.assertEqual(self.dm(errors_named("DeviceRefused")("no")).code, 403)
        self.assertEqual(self.dm(errors_named("WBXMLDecodeError")("no")).code, 415)
        self.assertEqual(self.dm(errors_named("SyncMLDecodeError")("no")).code, 400)

    def test_enrollment_endpoint(self) -> None:
        """
        A SOAP endpoint answers every error with a fault carrying the declared
        subcode (and ErrorType), with HTTP 500 as WCF does, except "busy":
        503 with Retry-After.
        """
        for cls in answered_error_classes():
            error = instance(cls)
            if isinstance(error, SoapFault):
                error.error_type = "NotEligibleToRenew"
            request = self.enrollment(error)
            self.assertEqual(request.code, 503 if cls.retry_after is not None else 500, cls)
            self.assertEqual(request.header(b"content-type"), b"application/soap+xml; charset=utf-8", cls)
            self.assertEqual(request.header(b"retry-after"), _retry_after(cls), cls)
            subcode, reason, error_type = self.fault_of(request)
            self.assertEqual((subcode, reason), (cls.soap_subcode, answer_text(error)), cls)
            self.assertEqual(error_type, "NotEligibleToRenew" if isinstance(error, SoapFault) else None, cls)
            self.logged(error)

    def test_enrollment_subcodes(self) -> None:
        """
        The errors enrollment meets carry MS-MDE2's subcodes themselves.
        """
        for name, subcode in (
            ("InvalidRequest", "s:CertificateRequest"),
            ("WeakKey", "s:CertificateRequest"),
            ("ClientCertificateRefused", "s:Authentication"),
            ("InvalidToken", "s:Authentication"),
            ("DeviceOwnedByAnotherUser", "s:Authorization"),
            ("NotEligibleToRenew", "s:CertificateRequest"),
            ("MalformedXML", "s:MessageFormat"),
            ("InvalidSecurityFault", "a:InvalidSecurity"),
            ("ConflictRetriesExhausted", "s:EnrollmentServer"),
        ):
            self.assertEqual(errors_named(name).soap_subcode, subcode, name)
            self.assertEqual(self.fault_of(self.enrollment(errors_named(name)("x")))[0], subcode, name)
        self.assertEqual(errors_named("ClientCertificateRefused").http_status, 403)
        self.assertEqual(errors_named("WBXMLDecodeError").http_status, 415)

    def test_busy_everywhere(self) -> None:
        """
        The store giving up is a 503 with Retry-After on all three surfaces,
        told without our details, and logged as a warning without traceback.
        """
        busy = ConflictRetriesExhausted("enroll conflicted 6 times")
        for request in (self.admin(busy), self.dm(busy), self.enrollment(busy)):
            self.assertEqual(request.code, 503)
            self.assertEqual(request.header(b"retry-after"), b"%d" % Busy.retry_after)
            self.assertNotIn(b"conflicted", request.body)
            self.assertIn(b"busy", request.body)
        self.assertEqual(self.flushLoggedErrors(ConflictRetriesExhausted), [])
        warnings = [e for e in self.events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 3)

    def test_unexpected_exception(self) -> None:
        """
        Anything undeclared is a bare 500 on every surface: no message, no
        traceback in the body; the traceback is in the log.
        """
        for surface in (self.admin, self.dm, self.enrollment):
            request = surface(KeyError("secret internal detail"))
            self.assertEqual(request.code, 500)
            self.assertIsNone(request.header(b"retry-after"))
            self.assertNotIn(b"secret", request.body)
            self.assertNotIn(b"Traceback", request.body)
            self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertEqual(self.fault_of(self.enrollment(ValueError("x")))[0], "a:InternalServiceFault")
        self.flushLoggedErrors(ValueError)


class DeclarationTests(SynchronousTestCase):
    def test_instances_keep_class_answers(self) -> None:
        """
        Per-instance details (an SMPP status, a SyncML chunk status) default
        to the class's declaration and never change the declaration itself.
        """
        self.assertEqual(PduError("short").command_status, Status.ESME_RINVCMDLEN)
        self.assertEqual(PduError("odd", Status.ESME_RINVCMDID).command_status, Status.ESME_RINVCMDID)
        self.assertEqual(PduError.smpp_status, Status.ESME_RINVCMDLEN)
        self.assertEqual(ChunkError("bad").status, StatusCode.INCOMPLETE_COMMAND)
        self.assertEqual(ChunkError("bad", StatusCode.SIZE_MISMATCH).status, StatusCode.SIZE_MISMATCH)
        self.assertEqual(ChunkError.syncml_status, 412)

    def test_smpp_constants(self) -> None:
        """
        The SMPP statuses L{mdmd.errors} names are the codec's.
        """
        self.assertEqual(errors.ESME_RINVCMDLEN, Status.ESME_RINVCMDLEN)
        self.assertEqual(errors.ESME_RSYSERR, Status.ESME_RSYSERR)
        self.assertEqual(errors.ESME_RX_T_APPN, Status.ESME_RX_T_APPN)
        self.assertEqual(Busy.smpp_status, Status.ESME_RX_T_APPN)

    def test_public_message(self) -> None:
        """
        A peer's error tells the peer its message; ours tell a fixed text.
        """
        self.assertEqual(answer_text(PeerError("you sent nonsense")), "you sent nonsense")
        self.assertEqual(answer_text(Busy("x conflicted")), Busy.public_message)
        self.assertNotIn("conflicted", answer_text(ConflictRetriesExhausted("x conflicted")))


def errors_named(name: str) -> type[AnsweredError]:
    (cls,) = [c for c in answered_error_classes() if c.__name__ == name]
    return cls


def _retry_after(cls: type[AnsweredError]) -> bytes | None:
    return None if cls.retry_after is None else b"%d" % cls.retry_after
