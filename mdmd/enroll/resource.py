"""
The C{/EnrollmentServer} subtree: thin twisted.web adapters over
L{mdmd.enroll.operations.EnrollmentService}.

Every SOAP answer, faults included, is C{application/soap+xml; charset=utf-8}
with a Content-Length (Windows rejects chunked answers). A fault is answered
with HTTP 500, as SOAP 1.2 over HTTP and Microsoft's own (WCF) enrollment
services do, and logged in one line naming the user and device when known.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from mdmd.enroll import federated
from mdmd.enroll.discovery import DISCOVER_ACTION, DISCOVER_RESPONSE_ACTION
from mdmd.enroll.operations import FEDERATED, EnrollmentService
from mdmd.enroll.soap import (
    ENROLLMENT_SERVER,
    INTERNAL_SERVICE_FAULT,
    AuthenticationFault,
    AuthorizationFault,
    CertificateRequestFault,
    MessageFormatFault,
    SoapFault,
    SoapRequest,
    fault,
    parse_request,
)
from mdmd.enroll.wstep import RST_ACTION, RSTRC_ACTION
from mdmd.enroll.xcep import GET_POLICIES_ACTION, GET_POLICIES_RESPONSE_ACTION
from mdmd.errors import PeerError
from mdmd.pki.csr import InvalidRequest
from mdmd.pki.tls import ClientCertificateRefused
from mdmd.site import AsyncResource, Response
from mdmd.store.runner import ConflictRetriesExhausted

__all__ = ["enrollment_resource", "SOAP_CONTENT_TYPE"]

log = Logger()

SOAP_CONTENT_TYPE = b"application/soap+xml; charset=utf-8"
HTML_CONTENT_TYPE = b"text/html; charset=utf-8"

Operation = Callable[[SoapRequest, Request, str], Awaitable[bytes]]


class SoapEndpoint(AsyncResource):
    """
    One enrollment operation: the request's Action must be C{action}; the
    answer (or fault) carries C{response_action}.
    """

    def __init__(self, name: str, action: str, response_action: str, operation: Operation) -> None:
        super().__init__()
        self.name = name
        self.action = action
        self.response_action = response_action
        self.operation = operation

    async def handle_POST(self, request: Request) -> Response:
        request.activity_id = str(uuid.uuid4())  # type: ignore[attr-defined]
        soap = parse_request(request.content.read())
        request.relates_to = soap.message_id  # type: ignore[attr-defined]
        if soap.username_token is not None and soap.username_token.username:
            # the claimed name, so that a refusal's log line says who tried
            request.enroll_user = soap.username_token.username  # type: ignore[attr-defined]
        if soap.action and soap.action.lower() != self.action.lower():
            raise MessageFormatFault(f"the {self.name} service does not handle action {soap.action!r}")
        body = await self.operation(soap, request, request.activity_id)  # type: ignore[attr-defined]
        return Response(body, content_type=SOAP_CONTENT_TYPE)

    def _failed(self, failure: Failure, request: Request) -> Response:
        request.enrollment_failure = failure  # type: ignore[attr-defined]
        return super()._failed(failure, request)

    def _fault(
        self, request: Request, subcode: str, reason: str, error_type: str | None = None
    ) -> Response:
        activity_id = getattr(request, "activity_id", None) or str(uuid.uuid4())
        body = fault(
            subcode,
            reason,
            self.response_action,
            getattr(request, "relates_to", ""),
            activity_id,
            error_type,
        )
        return Response(body, content_type=SOAP_CONTENT_TYPE, code=500)

    def peer_error(self, request: Request, error: PeerError) -> Response:
        if isinstance(error, SoapFault):
            subcode, error_type = error.subcode, error.error_type
        elif isinstance(error, InvalidRequest):
            subcode, error_type = CertificateRequestFault.subcode, None
        elif isinstance(error, ClientCertificateRefused):
            subcode, error_type = AuthenticationFault.subcode, None
        else:
            subcode, error_type = MessageFormatFault.subcode, None
        user = getattr(request, "enroll_user", None)
        device_id = getattr(request, "device_id", None)
        log.info(
            "{operation} refused ({subcode}{detail}): {reason}{who} [trace {trace}]",
            operation=self.name,
            subcode=subcode,
            detail=f", {error_type}" if error_type else "",
            reason=str(error),
            who="".join(
                part
                for part in (f" user={user}" if user else "", f" device={device_id}" if device_id else "")
            ),
            user=user,
            device_id=device_id,
            trace=getattr(request, "activity_id", ""),
        )
        return self._fault(request, subcode, str(error), error_type)

    def internal_error(self, request: Request) -> Response:
        failure = getattr(request, "enrollment_failure", None)
        if failure is not None and failure.check(ConflictRetriesExhausted):
            subcode, reason = ENROLLMENT_SERVER, "the enrollment database is busy; try again later"
        else:
            subcode, reason = INTERNAL_SERVICE_FAULT, "the enrollment server failed; see its log"
        log.error(
            "{operation} failed for{who}: answered {subcode} [trace {trace}]",
            operation=self.name,
            who=f" user={getattr(request, 'enroll_user', '-')} device={getattr(request, 'device_id', '-')}",
            subcode=subcode,
            trace=getattr(request, "activity_id", ""),
        )
        return self._fault(request, subcode, reason)


class DiscoveryEndpoint(SoapEndpoint):
    """
    C{Discovery.svc}: GET answers 200 with an empty body (the client's probe).
    """

    async def handle_GET(self, request: Request) -> Response:
        return Response(b"", content_type=HTML_CONTENT_TYPE)


class SignInPage(AsyncResource):
    """
    The Federated policy's AuthenticationServiceUrl: a sign-in form whose
    success page posts the security token back to the broker (C{appru}).
    """

    def __init__(self, service: EnrollmentService) -> None:
        super().__init__()
        self.service = service

    def _available(self) -> None:
        if self.service.settings.auth_policy != FEDERATED:
            raise _NotFederated("sign-in is only used with the Federated policy")

    async def handle_GET(self, request: Request) -> Response:
        self._available()
        appru = _argument(request, b"appru")
        if not federated.valid_appru(appru):
            raise _BadCallback("appru must be the ms-app:// address of the enrollment client")
        return self._page(appru, _argument(request, b"login_hint"))

    async def handle_POST(self, request: Request) -> Response:
        self._available()
        appru = _argument(request, b"appru")
        if not federated.valid_appru(appru):
            raise _BadCallback("appru must be the ms-app:// address of the enrollment client")
        name = _argument(request, b"username").strip()
        password = _argument(request, b"password")
        try:
            token = await self.service.sign_in(name, password)
        except (AuthenticationFault, AuthorizationFault) as e:
            log.info("federated sign-in refused for {user}: {reason}", user=name, reason=str(e))
            message = (
                "This account may not enroll devices."
                if isinstance(e, AuthorizationFault)
                else "The user name or password is incorrect."
            )
            return self._page(appru, name, message)
        request.enroll_user = name  # type: ignore[attr-defined]
        log.info("federated sign-in: {user}", user=name)
        return Response(
            federated.post_back_page(appru, token),
            content_type=HTML_CONTENT_TYPE,
            headers=((b"Cache-Control", b"no-store"),),
        )

    def _page(self, appru: str, login_hint: str, error: str = "") -> Response:
        action = self.service.urls.authentication
        return Response(
            federated.sign_in_page(
                action, appru, login_hint, self.service.settings.account.name, error
            ),
            content_type=HTML_CONTENT_TYPE,
            headers=((b"Cache-Control", b"no-store"), (b"X-Frame-Options", b"DENY")),
        )

    def peer_error(self, request: Request, error: PeerError) -> Response:
        code = 404 if isinstance(error, _NotFederated) else 400
        return Response(f"{error}\n".encode("utf-8"), code=code)


class _NotFederated(PeerError):
    pass


class _BadCallback(PeerError):
    pass


def _argument(request: Request, name: bytes) -> str:
    values = request.args.get(name) or [b""]
    return values[0].decode("utf-8", "replace")


def enrollment_resource(service: EnrollmentService) -> Resource:
    """
    The C{/EnrollmentServer} subtree.
    """
    tree = Resource()
    tree.putChild(
        b"Discovery.svc",
        DiscoveryEndpoint("discovery", DISCOVER_ACTION, DISCOVER_RESPONSE_ACTION,
                          lambda soap, request, activity: service.discover(soap, activity)),
    )
    tree.putChild(
        b"Policy.svc",
        SoapEndpoint("policy", GET_POLICIES_ACTION, GET_POLICIES_RESPONSE_ACTION, service.get_policies),
    )
    tree.putChild(
        b"Enrollment.svc",
        SoapEndpoint("enrollment", RST_ACTION, RSTRC_ACTION, service.request_token),
    )
    tree.putChild(b"Authenticate", SignInPage(service))
    return tree
