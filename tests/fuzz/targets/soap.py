"""
SOAP enrollment requests, read as the three endpoints read them.

Every input goes to Discovery.svc, Policy.svc and Enrollment.svc in turn:
the envelope (L{mdmd.enroll.soap.parse_request}), the Action check of
L{mdmd.enroll.resource.SoapEndpoint}, then each operation's pure part (the
Discover fields and the negotiated version, GetPolicies, the
RequestSecurityToken and its PKCS#10 or PKCS#7 with the checks
L{mdmd.enroll.operations} makes before the store, the Federated token),
and the answer or the fault the endpoint would write. A refusal is a
L{PeerError}: the endpoint's SOAP fault.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

from mdmd.enroll import federated
from mdmd.enroll.discovery import (
    DISCOVER_ACTION,
    DISCOVER_RESPONSE_ACTION,
    DiscoveryAnswer,
    discover_response,
    negotiate_version,
    parse_discover,
)
from mdmd.enroll.provisioning import certificate_store
from mdmd.enroll.soap import MessageFormatFault, SoapFault, SoapRequest, fault, parse_request
from mdmd.enroll.wstep import (
    ISSUE,
    RST_ACTION,
    RSTRC_ACTION,
    USER_TOKEN_VALUE_TYPE,
    parse_token_request,
    valid_device_id,
)
from mdmd.enroll.xcep import (
    GET_POLICIES_ACTION,
    GET_POLICIES_RESPONSE_ACTION,
    CertificatePolicy,
    check_get_policies,
    get_policies_response,
)
from mdmd.errors import AnsweredError, PeerError, answer_text
from mdmd.pki import csr as pkcs
from mdmd.testing.windows import soap as windows
from mdmd.testing.windows.csr import legacy_csr, modern_csr, renewal_request
from tests.fuzz import mutate
from tests.fuzz.engine import HERE, Target
from tests.fuzz.targets._material import DEVICE_ID, NOW, device_key, ec_csr, issued, weak_key

__all__ = ["target", "generate_seeds"]

_POLICY = CertificatePolicy("mdmd device", 2048, 365 * 86400, 60 * 86400)
_TOKEN_KEY = b"k" * federated.KEY_BYTES
_ACTIVITY = "00000000-0000-0000-0000-000000000000"
_BASE = "https://mdm.example.com"


def _discover(soap: SoapRequest) -> bytes:
    request = parse_discover(soap)
    answer = DiscoveryAnswer(
        auth_policy="OnPremise",
        enrollment_version=negotiate_version(request.request_version, "5.0"),
        policy_service_url=_BASE + "/EnrollmentServer/Policy.svc",
        enrollment_service_url=_BASE + "/EnrollmentServer/Enrollment.svc",
    )
    return discover_response(answer, soap.message_id, _ACTIVITY)


def _federated(soap: SoapRequest) -> None:
    token = soap.token(USER_TOKEN_VALUE_TYPE.rpartition("/")[2])
    if token is not None and token.data is not None:
        federated.verify_token(_TOKEN_KEY, token.data, NOW)


def _get_policies(soap: SoapRequest) -> bytes:
    check_get_policies(soap)
    _federated(soap)
    return get_policies_response(_POLICY, soap.message_id, _ACTIVITY)


def _certificate_request(der: bytes) -> pkcs.CertificationRequest:
    # EnrollmentService._certificate_request
    csr = pkcs.parse_csr(der)
    pkcs.check_key(csr, _POLICY.min_key_length)
    return csr


def _request_token(soap: SoapRequest) -> bytes:
    token_request = parse_token_request(soap)
    if token_request.request_type == ISSUE:
        _federated(soap)
        csr = _certificate_request(token_request.token)
        device_id = token_request.value("DeviceID") or csr.device_id or ""
        if not device_id or not valid_device_id(device_id):
            raise MessageFormatFault(f"DeviceID {device_id!r} is not usable", "InvalidEnrollmentData")
        certificate_store(token_request.value("EnrollmentType"))
        token_request.value("DeviceName")
        return f"{csr.key_description} {csr.subject_text}".encode()
    signed = pkcs.parse_signed_request(token_request.token)
    inner = pkcs.request_from_content(signed.content)
    csr = _certificate_request(inner)
    return csr.key_description.encode()


#: (Action, response action, operation) of each endpoint.
_ENDPOINTS: tuple[tuple[str, str, Callable[[SoapRequest], bytes]], ...] = (
    (DISCOVER_ACTION, DISCOVER_RESPONSE_ACTION, _discover),
    (GET_POLICIES_ACTION, GET_POLICIES_RESPONSE_ACTION, _get_policies),
    (RST_ACTION, RSTRC_ACTION, _request_token),
)


def _answer(error: AnsweredError, response_action: str, relates_to: str) -> bytes:
    # SoapEndpoint.error_body
    return fault(
        error.soap_subcode,
        answer_text(error),
        response_action,
        relates_to,
        _ACTIVITY,
        error.error_type if isinstance(error, SoapFault) else None,
    )


class Refused(PeerError):
    """
    What each endpoint refused the input with (so that the run sees how far each got).
    """


def run(data: bytes) -> None:
    try:
        soap = parse_request(data)
    except PeerError as e:
        _answer(e, DISCOVER_RESPONSE_ACTION, "")
        raise
    refusals = []
    for action, response_action, operation in _ENDPOINTS:
        try:
            # SoapEndpoint.handle_POST
            if soap.action and soap.action.lower() != action.lower():
                raise MessageFormatFault(f"this service does not handle action {soap.action!r}")
            operation(soap)
        except PeerError as e:
            _answer(e, response_action, soap.message_id)
            refusals.append(f"{type(e).__name__}: {e}")
    if refusals:
        raise Refused("; ".join(refusals))


def target() -> Target:
    return Target("soap", run, (PeerError,), mutate.XML, bounded_inputs=2500)


def _sample(name: str, token: bytes | None = None) -> bytes:
    with open(os.path.join(HERE, "..", "enroll", "samples", name), "rb") as f:
        data = f.read()
    if token is not None:
        encoded = base64.b64encode(token)
        data = data.replace(b"@CSR@", b"\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64)))
    return data


def generate_seeds() -> dict[str, bytes]:
    to = _BASE + "/EnrollmentServer/Discovery.svc"
    key = device_key()
    modern = modern_csr(key, DEVICE_ID)
    _, _, certificate = issued()
    renewal = renewal_request(certificate, key, modern)
    context = [
        ("UXInitiated", "true"), ("HWDevID", "7D3A5F1C9B2E4D6A"), ("Locale", "en-US"),
        ("TargetedUserLoggedIn", "true"), ("EnrollmentType", "Full"), ("DeviceType", "CIMClient_Windows"),
        ("OSVersion", "10.0.26100.1"), ("DeviceID", DEVICE_ID), ("MAC", "00-15-5D-01-02-03"),
        ("MAC", "00-15-5D-01-02-03"), ("DeviceName", "DESKTOP-FUZZ"),
    ]
    onpremise = windows.username_security("user@example.com", "secret password")
    token = federated.mint_token(_TOKEN_KEY, "user@example.com", NOW, 3600, b"n" * 12)
    user_token = windows.user_token_security(token.encode())
    message_id = "urn:uuid:748132ec-a575-4329-b01b-6171a9cf8478"
    return {
        "discover-9.0": windows.discover_message(to, "user@example.com", "9.0", message_id=message_id),
        "discover-4.0": windows.discover_message(
            to, "demo@example.com", "4.0", auth_policies=("OnPremise",), message_id=message_id
        ),
        "discover-certificate": windows.discover_message(
            to, "user@example.com", "6.0", auth_policies=("Certificate",), message_id=message_id
        ),
        "getpolicies-onpremise": windows.get_policies_message(to, onpremise, message_id),
        "getpolicies-federated": windows.get_policies_message(to, user_token, message_id),
        "rst-modern": windows.token_message(to, onpremise, modern, context, message_id=message_id),
        "rst-legacy": windows.token_message(
            to, onpremise, legacy_csr(key, DEVICE_ID), context[:7], message_id=message_id
        ),
        "rst-weak-key": windows.token_message(
            to, user_token, modern_csr(weak_key(), DEVICE_ID), context, message_id=message_id
        ),
        "rst-renew": windows.token_message(to, "", renewal, context[:3], renew=True, message_id=message_id),
        "rst-renew-base64": windows.token_message(
            to, "", renewal_request(certificate, key, modern, base64_content=True), [], renew=True,
            message_id=message_id, wrap_base64=False,
        ),
        "rst-ec-key": windows.token_message(
            to, onpremise, ec_csr(), context, message_id=message_id
        ),
        "ms-discover-onpremise": _sample("discover-onpremise.xml"),
        "ms-discover-certificate": _sample("discover-certificate.xml"),
        "ms-getpolicies-onpremise": _sample("getpolicies-onpremise.xml"),
        "ms-rst-onpremise": _sample("rst-onpremise.xml", modern),
        "ms-rst-renew": _sample("rst-renew.xml", renewal),
        "soap11-discover": windows.discover_message(to, "user@example.com", "3.0").replace(
            b"http://www.w3.org/2003/05/soap-envelope", b"http://schemas.xmlsoap.org/soap/envelope/"
        ),
    }

