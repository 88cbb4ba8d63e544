"""
The Certificate policy's proof of possession: a WS-Security header with an
X.509 BinarySecurityToken, a timestamp and an XML signature over them
(MS-MDE2 3.4.4.1.1.1.2).

This checks the signature only (canonicalization with lxml, digests and the
signature value with C{cryptography}): that the certificate is one we trust
is the adapter's question. Supported: exclusive and inclusive C14N 1.0,
RSA-SHA1/SHA256/SHA384/SHA512 and ECDSA-SHA256/384/512, SHA-1/SHA-256/
SHA-384/SHA-512 digests, same-document references by Id. The timestamp must
be signed and current, so a captured header cannot be replayed for long.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from mdmd.enroll.soap import (
    AuthenticationFault,
    InvalidSecurityFault,
    attribute,
    child,
    children,
    decode_base64,
    text,
)

__all__ = ["SignedHeader", "verify_signed_header", "canonicalize", "EXC_C14N", "C14N"]

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"

_DIGESTS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}
_SIGNATURES: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1": ("rsa", hashes.SHA1),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": ("rsa", hashes.SHA256),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": ("rsa", hashes.SHA384),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": ("rsa", hashes.SHA512),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": ("ec", hashes.SHA256),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": ("ec", hashes.SHA384),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": ("ec", hashes.SHA512),
}
#: Allowed clock difference for the signed timestamp.
SKEW = 300.0


@dataclass(frozen=True)
class SignedHeader:
    certificate: x509.Certificate
    #: the Ids of the elements the signature covers
    signed_ids: tuple[str, ...]


def canonicalize(element: etree._Element, algorithm: str, prefixes: list[str] | None = None) -> bytes:
    """
    C14N 1.0 (exclusive or inclusive, without comments) of C{element} in its document.
    """
    try:
        if algorithm == EXC_C14N:
            return etree.tostring(
                element, method="c14n", exclusive=True, with_comments=False,
                inclusive_ns_prefixes=prefixes or None,
            )
        if algorithm == C14N:
            return etree.tostring(element, method="c14n", exclusive=False, with_comments=False)
    except etree.C14NError:
        # libxml2 refuses what C14N 1.0 cannot express, such as a relative namespace URI
        raise InvalidSecurityFault("the signed XML cannot be canonicalized") from None
    raise InvalidSecurityFault(f"unsupported canonicalization {algorithm!r}")


def _algorithm(element: etree._Element | None) -> str:
    return "" if element is None else attribute(element, "Algorithm") or ""


def _method(element: etree._Element | None) -> tuple[str, list[str]]:
    if element is None:
        return C14N, []
    prefixes = []
    inclusive = child(element, "InclusiveNamespaces")
    if inclusive is not None:
        prefixes = (attribute(inclusive, "PrefixList") or "").split()
    return _algorithm(element), prefixes


def _by_id(root: etree._Element, wanted: str) -> etree._Element:
    found = [
        element
        for element in root.iter()
        if isinstance(element.tag, str)
        and any(key.rpartition("}")[2] == "Id" and value == wanted for key, value in element.attrib.items())
    ]
    if len(found) != 1:
        raise InvalidSecurityFault(f"the signature references {wanted!r}, found {len(found)} such elements")
    return found[0]


def _time(value: str) -> float:
    try:
        moment = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSecurityFault(f"unreadable timestamp {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _certificate(security: etree._Element) -> x509.Certificate:
    for token in children(security, "BinarySecurityToken"):
        try:
            # InvalidVersion is not a ValueError
            return x509.load_der_x509_certificate(decode_base64(text(token)))
        except (ValueError, x509.InvalidVersion):
            continue
    raise InvalidSecurityFault("the security header carries no X.509 certificate")


def _public_key(certificate: x509.Certificate) -> CertificatePublicKeyTypes:
    """
    The certificate's key; C{cryptography} reads it only now, and may not know its kind.
    """
    try:
        return certificate.public_key()
    except (ValueError, UnsupportedAlgorithm) as e:
        raise InvalidSecurityFault(f"the signing certificate's key is unsupported or malformed: {e}") from None


def _check_signature(key: object, signature: bytes, data: bytes, method: str) -> None:
    kind, algorithm = _SIGNATURES[method]
    if kind == "rsa" and isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), algorithm())
        return
    if kind == "ec" and isinstance(key, ec.EllipticCurvePublicKey):
        half = len(signature) // 2
        der = encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        )
        key.verify(der, data, ec.ECDSA(algorithm()))
        return
    raise InvalidSignature()


def verify_signed_header(root: etree._Element, security: etree._Element | None, now: float) -> SignedHeader:
    """
    Verify the XML signature of a Certificate-policy security header.

    @raise InvalidSecurityFault: if the header is missing parts or uses
        algorithms we do not support.
    @raise AuthenticationFault: if a digest or the signature does not verify,
        or the signed timestamp is not current.
    """
    if security is None:
        raise InvalidSecurityFault("the request has no WS-Security header")
    certificate = _certificate(security)
    signature = child(security, "Signature")
    if signature is None:
        raise InvalidSecurityFault("the security header is not signed")
    signed_info = child(signature, "SignedInfo")
    if signed_info is None:
        raise InvalidSecurityFault("the signature has no SignedInfo")
    c14n, prefixes = _method(child(signed_info, "CanonicalizationMethod"))
    method = _algorithm(child(signed_info, "SignatureMethod"))
    if method not in _SIGNATURES:
        raise InvalidSecurityFault(f"unsupported signature method {method!r}")
    signed_ids = []
    for reference in children(signed_info, "Reference"):
        uri = attribute(reference, "URI") or ""
        if not uri.startswith("#"):
            raise InvalidSecurityFault(f"unsupported signature reference {uri!r}")
        target = _by_id(root, uri[1:])
        transform_method = C14N
        transform_prefixes: list[str] = []
        for transform in children(child(reference, "Transforms"), "Transform"):
            transform_method, transform_prefixes = _method(transform)
        digest_method = _DIGESTS.get(_algorithm(child(reference, "DigestMethod")))
        if digest_method is None:
            raise InvalidSecurityFault("unsupported or missing digest method")
        digest = hashlib.new(digest_method, canonicalize(target, transform_method, transform_prefixes)).digest()
        try:
            expected = decode_base64(text(child(reference, "DigestValue")))
        except ValueError:
            raise InvalidSecurityFault("unreadable DigestValue") from None
        if not hmac.compare_digest(digest, expected):
            raise AuthenticationFault(f"the digest of the signed element {uri} does not match")
        signed_ids.append(uri[1:])
    if not signed_ids:
        raise InvalidSecurityFault("the signature covers nothing")
    try:
        value = decode_base64(text(child(signature, "SignatureValue")))
    except ValueError:
        raise InvalidSecurityFault("unreadable SignatureValue") from None
    try:
        _check_signature(_public_key(certificate), value, canonicalize(signed_info, c14n, prefixes), method)
    except InvalidSignature:
        raise AuthenticationFault("the XML signature does not verify with the certificate") from None

    stamp = child(security, "Timestamp")
    stamp_id = attribute(stamp, "Id") if stamp is not None else None
    if stamp is None or stamp_id not in signed_ids:
        raise AuthenticationFault("the signature must cover the security header's Timestamp")
    created, expires = _time(text(child(stamp, "Created"))), _time(text(child(stamp, "Expires")))
    if created > now + SKEW or expires < now - SKEW:
        raise AuthenticationFault("the signed Timestamp is not current (check the device clock)")
    return SignedHeader(certificate, tuple(signed_ids))
