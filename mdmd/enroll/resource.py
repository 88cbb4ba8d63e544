"""
The C{/EnrollmentServer} subtree: thin twisted.web adapters over
L{mdmd.enroll.operations.EnrollmentService}.

A SOAP request must say it is one (C{application/soap+xml}, or SOAP 1.1's
C{text/xml}). Every SOAP answer, faults included, is C{application/soap+xml;
charset=utf-8} with a Content-Length (Windows rejects chunked answers). A
fault carries the subcode its error declares (C{soap_subcode}) and is
answered with HTTP 500, as SOAP 1.2 over HTTP and Microsoft's own (WCF)
enrollment services do; only "busy" (C{s:EnrollmentServer}) is a 503 with
Retry-After. Each is logged in one line naming the user and device when known.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Mapping

from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from mdmd.enroll import federated
from mdmd.enroll.discovery import DISCOVER_ACTION, DISCOVER_RESPONSE_ACTION
from mdmd.enroll.operations import FEDERATED, EnrollmentService
from mdmd.enroll.soap import (
    AuthenticationFault,
    AuthorizationFault,
    MessageFormatFault,
    SoapFault,
    SoapRequest,
    check_content_type,
    fault,
    parse_request,
    quoted,
)
from mdmd.enroll.users import TooManyAttempts
from mdmd.enroll.wstep import RST_ACTION, RSTRC_ACTION
from mdmd.enroll.xcep import GET_POLICIES_ACTION, GET_POLICIES_RESPONSE_ACTION
from mdmd.errors import AnsweredError, InternalError, NotFound, PeerError
from mdmd.listeners import peer_source
from mdmd.site import AsyncResource, MdmdRequest, Response

__all__ = ["enrollment_resource", "SOAP_CONTENT_TYPE"]

log = Logger()

SOAP_CONTENT_TYPE = b"application/soap+xml; charset=utf-8"
HTML_CONTENT_TYPE = b"text/html; charset=utf-8"
FORM_CONTENT_TYPE = b"application/x-www-form-urlencoded"
#: The sign-in form's largest body and most fields (appru, username, password).
MAX_FORM = 8192
MAX_FORM_FIELDS = 8

Operation = Callable[[SoapRequest, MdmdRequest, str], Awaitable[bytes]]


class SoapEndpoint(AsyncResource):
    """
    One enrollment operation: the request's Action must be C{action}; the
    answer (or fault) carries C{response_action}.
    """

    fault_status = 500

    def __init__(self, name: str, action: str, response_action: str, operation: Operation) -> None:
        super().__init__()
        self.name = name
        self.action = action
        self.response_action = response_action
        self.operation = operation

    async def handle_POST(self, request: MdmdRequest) -> Response:
        activity_id = request.activity_id = str(uuid.uuid4())
        check_content_type(request.getHeader(b"content-type"))
        soap = parse_request(request.content.read())
        request.relates_to = soap.message_id
        if soap.username_token is not None and soap.username_token.username:
            # the claimed name, so that a refusal's log line says who tried
            request.enroll_user = soap.username_token.username
        if soap.action and soap.action.lower() != self.action.lower():
            raise MessageFormatFault(f"the {self.name} service does not handle action {quoted(soap.action)}")
        body = await self.operation(soap, request, activity_id)
        return Response(body, content_type=SOAP_CONTENT_TYPE)

    def error_body(
        self, request: MdmdRequest, error: AnsweredError, message: str
    ) -> tuple[bytes, bytes]:
        body = fault(
            error.soap_subcode,
            message,
            self.response_action,
            request.relates_to,
            self._activity_id(request),
            error.error_type if isinstance(error, SoapFault) else None,
        )
        return body, SOAP_CONTENT_TYPE

    def log_answered(self, request: MdmdRequest, error: AnsweredError, level: LogLevel) -> None:
        error_type = error.error_type if isinstance(error, SoapFault) else None
        log.emit(
            level,
            "{operation} {outcome} ({subcode}{detail}): {reason}{who} [trace {trace}]",
            operation=self.name,
            outcome="refused" if isinstance(error, PeerError) else "not served",
            subcode=error.soap_subcode,
            detail=f", {error_type}" if error_type else "",
            reason=str(error),
            who=self._who(request),
            user=request.enroll_user,
            device_id=request.device_id,
            trace=self._activity_id(request),
        )

    def log_failed(self, request: MdmdRequest, failure: Failure) -> None:
        log.failure(
            "{operation} failed for{who}: answered {subcode} [trace {trace}]",
            failure,
            operation=self.name,
            who=self._who(request) or " an unknown peer",
            subcode=InternalError.soap_subcode,
            user=request.enroll_user,
            device_id=request.device_id,
            trace=self._activity_id(request),
        )

    @staticmethod
    def _activity_id(request: MdmdRequest) -> str:
        """
        The request's trace id (one is made up if the request failed before it got one).
        """
        if request.activity_id is None:
            request.activity_id = str(uuid.uuid4())
        return request.activity_id

    @staticmethod
    def _who(request: MdmdRequest) -> str:
        user = request.enroll_user
        device_id = request.device_id
        return f"{f' user={user}' if user else ''}{f' device={device_id}' if device_id else ''}"


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

    async def handle_POST(self, request: MdmdRequest) -> Response:
        self._available()
        form = _form(request)
        appru = _argument(request, b"appru", form)
        if not federated.valid_appru(appru):
            raise _BadCallback("appru must be the ms-app:// address of the enrollment client")
        name = _argument(request, b"username", form).strip()
        password = _argument(request, b"password", form)
        try:
            token = await self.service.sign_in(name, password, peer_source(request.getClientAddress()))
        except (AuthenticationFault, AuthorizationFault, TooManyAttempts) as e:
            log.info("federated sign-in refused for {user}: {reason}", user=name, reason=str(e))
            message = (
                "This account may not enroll devices."
                if isinstance(e, AuthorizationFault)
                else "Too many failed sign-ins. Try again later."
                if isinstance(e, TooManyAttempts)
                else "The user name or password is incorrect."
            )
            return self._page(appru, name, message)
        request.enroll_user = name
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


class _NotFederated(NotFound):
    """
    The sign-in page exists only with the Federated policy.
    """


class _BadCallback(PeerError):
    """
    The C{appru} to post the token back to is not the enrollment client's.
    """


class _FormTooLarge(PeerError):
    """
    A sign-in form body larger than any sign-in needs.
    """

    http_status = 413


def _form(request: MdmdRequest) -> Mapping[bytes, list[bytes]]:
    """
    The fields of a url-encoded form body (none for another type): the
    only form mdmd takes, read here since no body is parsed for us
    (L{mdmd.site.MdmdRequest}).

    @raise _FormTooLarge: beyond L{MAX_FORM} bytes or L{MAX_FORM_FIELDS} fields.
    """
    content_type = request.getHeader(b"content-type") or b""
    if content_type.partition(b";")[0].strip().lower() != FORM_CONTENT_TYPE:
        return {}
    body = request.content.read(MAX_FORM + 1)
    if len(body) > MAX_FORM:
        raise _FormTooLarge(f"a sign-in form is at most {MAX_FORM} bytes")
    try:
        return urllib.parse.parse_qs(body, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise _FormTooLarge(f"a sign-in form has at most {MAX_FORM_FIELDS} fields") from None


def _argument(request: Request, name: bytes, form: Mapping[bytes, list[bytes]] | None = None) -> str:
    """
    The first value of field C{name}: from the form body if it has one, else from the query string.
    """
    values = (form or {}).get(name) or request.args.get(name) or [b""]
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
