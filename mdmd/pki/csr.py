"""
Certificate requests as devices really send them: PKCS#10, and PKCS#7/CMS
SignedData wrapping one (certificate renewal).

C{cryptography}'s CSR loader refuses what older Windows clients produce (a
PrintableString CN holding C{!} and a trailing NUL, signed under the ISO
sha1WithRSA OID 1.3.14.3.2.29), so requests are decoded leniently with
pyasn1, the signed bytes are sliced from the original encoding (never
re-encoded), and the signature is checked with C{cryptography}'s public key.
Nothing here trusts the request's subject: callers choose the names they
certify. Pure functions of bytes; no clock, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_modules import rfc2986, rfc5280, rfc5652

from mdmd.errors import SOAP_CERTIFICATE_REQUEST, PeerError

__all__ = [
    "InvalidRequest",
    "InvalidCSR",
    "WeakKey",
    "InvalidSignedRequest",
    "CertificationRequest",
    "SignedRequest",
    "parse_csr",
    "check_key",
    "parse_signed_request",
    "MAX_REQUEST_SIZE",
    "OID_MS_DEVICE_ID",
]

#: Larger requests are refused before decoding (a CSR is about 1 KiB).
MAX_REQUEST_SIZE = 64 * 1024

#: Microsoft's enrollment extension carrying the DeviceID (ASCII, NUL-terminated).
OID_MS_DEVICE_ID = "1.3.6.1.4.1.311.66.1.0"

_OID_EXTENSION_REQUEST = ("1.2.840.113549.1.9.14", "1.3.6.1.4.1.311.2.1.14")
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

#: Signature algorithm OID → (key type, hash name).
_SIGNATURE_ALGORITHMS: dict[str, tuple[str, str]] = {
    "1.2.840.113549.1.1.5": ("rsa", "sha1"),
    "1.3.14.3.2.29": ("rsa", "sha1"),  # ISO sha1WithRSASignature: older Windows clients
    "1.2.840.113549.1.1.14": ("rsa", "sha224"),
    "1.2.840.113549.1.1.11": ("rsa", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa", "sha384"),
    "1.2.840.113549.1.1.13": ("rsa", "sha512"),
    "1.2.840.10045.4.1": ("ec", "sha1"),
    "1.2.840.10045.4.3.1": ("ec", "sha224"),
    "1.2.840.10045.4.3.2": ("ec", "sha256"),
    "1.2.840.10045.4.3.3": ("ec", "sha384"),
    "1.2.840.10045.4.3.4": ("ec", "sha512"),
}

_DIGEST_ALGORITHMS: dict[str, str] = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}

_EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class InvalidRequest(PeerError):
    """
    A certificate request we cannot accept: malformed, badly signed or against policy.
    """

    soap_subcode = SOAP_CERTIFICATE_REQUEST


class InvalidCSR(InvalidRequest):
    """
    The PKCS#10 request is not decodable or its signature does not verify.
    """


class WeakKey(InvalidCSR):
    """
    The requested key is of a kind or size the enrollment policy does not allow.
    """


class InvalidSignedRequest(InvalidRequest):
    """
    The PKCS#7/CMS SignedData is malformed or its signer's signature does not verify.
    """


#: What the decoders raise for bytes they cannot read: pyasn1 (an IndexError
#: from its encoder, too, when a decoded value cannot be encoded again, an
#: OverflowError for a length past the index size), and C{cryptography},
#: which reads parts of a certificate (its version, issuer, key, extensions)
#: only when they are first used (a TypeError for a name attribute of the
#: wrong string type). C{ValueError} includes Python's refusal to print an
#: integer of more than 4300 digits.
_UNREADABLE: tuple[type[Exception], ...] = (
    ValueError,
    IndexError,
    OverflowError,
    TypeError,
    PyAsn1Error,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
)


def _reason(error: Exception) -> str:
    """
    A decoder's complaint, short enough for a fault (pyasn1's quote whole objects).
    """
    text = str(error) or type(error).__name__
    return text if len(text) <= 160 else text[:160] + "..."


# --- DER slicing: signed bytes are taken from the input, never re-encoded -----------


def _tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """
    (tag byte, start of content, end of element) of the element at C{offset}.
    """
    if offset + 2 > len(data):
        raise ValueError("truncated element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte tags are not supported")
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("indefinite or oversized length")
        if start + count > len(data):
            raise ValueError("truncated length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise ValueError("element runs past the end of the data")
    return tag, start, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """
    (tag, offset, end) of each element in C{data[start:end]}.
    """
    found = []
    offset = start
    while offset < end:
        tag, _, element_end = _tlv(data, offset)
        found.append((tag, offset, element_end))
        offset = element_end
    if offset != end:
        raise ValueError("elements overrun their container")
    return found


def _oid(content: bytes) -> str:
    """
    The dotted form of an OBJECT IDENTIFIER's content octets.
    """
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or content[-1] & 0x80:
        raise ValueError("malformed OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def _whole(data: bytes) -> tuple[int, int]:
    """
    The content bounds of the single outer element that must make up C{data}.
    """
    tag, start, end = _tlv(data, 0)
    if tag != 0x30:
        raise ValueError("not a SEQUENCE")
    if end != len(data):
        raise ValueError("trailing bytes after the request")
    return start, end


# --- PKCS#10 ---------------------------------------------------------------------------


class CertificationRequest:
    """
    A PKCS#10 request whose signature has been verified.

    What the signature check needs (the signed bytes, the key, the algorithm,
    the signature) is sliced from the DER on the hot path; the subject and
    the attributes are decoded with pyasn1, leniently, only when asked for:
    nothing we issue depends on them.
    """

    def __init__(
        self, der: bytes, public_key: PublicKey, signature_algorithm: str, hash_name: str, info: bytes
    ) -> None:
        self.der = der
        self.public_key = public_key
        self.signature_algorithm = signature_algorithm
        self.hash_name = hash_name
        self._info = info

    @functools.cached_property
    def _decoded(self) -> tuple[
        tuple[tuple[str, str], ...],
        tuple[tuple[str, tuple[bytes, ...]], ...],
        tuple[tuple[str, bool, bytes], ...],
    ]:
        try:
            info, _ = der_decoder.decode(self._info, asn1Spec=rfc2986.CertificationRequestInfo())
            subject = tuple(
                (str(attribute["type"]), _text(bytes(attribute["value"])))
                for rdn in info["subject"]["rdnSequence"]
                for attribute in rdn
            )
            attributes = []
            extensions: list[tuple[str, bool, bytes]] = []
            for attribute in info["attributes"]:
                oid = str(attribute["type"])
                values = tuple(bytes(v) for v in attribute["values"])
                attributes.append((oid, values))
                if oid in _OID_EXTENSION_REQUEST:
                    for value in values:
                        extensions.extend(_extensions(value))
        except (PyAsn1Error, TypeError, ValueError):
            return (), (), ()  # informational only: an unreadable part reads as empty
        return subject, tuple(attributes), tuple(extensions)

    @property
    def subject(self) -> tuple[tuple[str, str], ...]:
        """
        (attribute OID, best-effort text) of each subject RDN, in order; informational only.
        """
        return self._decoded[0]

    @property
    def attributes(self) -> tuple[tuple[str, tuple[bytes, ...]], ...]:
        """
        (OID, DER-encoded values) of each request attribute.
        """
        return self._decoded[1]

    @property
    def extensions(self) -> tuple[tuple[str, bool, bytes], ...]:
        """
        (OID, critical, extnValue octets) from the extension-request attribute(s).
        """
        return self._decoded[2]

    @property
    def key_description(self) -> str:
        key = self.public_key
        if isinstance(key, rsa.RSAPublicKey):
            return f"RSA {key.key_size}"
        return f"EC {key.curve.name}"

    @property
    def subject_text(self) -> str:
        return ",".join(f"{_SHORT_NAMES.get(oid, oid)}={value}" for oid, value in self.subject)

    def extension(self, oid: str) -> bytes | None:
        for found, _, value in self.extensions:
            if found == oid:
                return value
        return None

    @property
    def device_id(self) -> str | None:
        """
        The DeviceID Windows puts in extension 1.3.6.1.4.1.311.66.1.0, if any.
        """
        value = self.extension(OID_MS_DEVICE_ID)
        if value is None:
            return None
        try:  # usually an OCTET STRING or a string type wrapping ASCII
            decoded, _ = der_decoder.decode(value)
            raw = bytes(decoded) if isinstance(decoded, univ.OctetString) else str(decoded).encode()
        except (PyAsn1Error, UnicodeError, TypeError, ValueError):
            raw = value
        text = raw.rstrip(b"\0").decode("ascii", "replace")
        return text if text.isprintable() and text else None


_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
}


def _text(value: bytes) -> str:
    """
    Best-effort text of a DER-encoded directory string (lenient: any string type, NULs kept).
    """
    try:
        tag, start, end = _tlv(value, 0)
    except ValueError:
        return value.hex()
    content = value[start:end]
    if tag == 0x1E:  # BMPString
        return content.decode("utf-16-be", "replace")
    if tag == 0x1C:  # UniversalString
        return content.decode("utf-32-be", "replace")
    if tag in (0x0C, 0x13, 0x14, 0x16, 0x1A, 0x12):
        return content.decode("utf-8", "replace")
    return content.hex()


def _load_public_key(spki: bytes) -> PublicKey:
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise WeakKey(f"unsupported or malformed public key: {e}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _EC_CURVES):
            raise WeakKey(f"elliptic curve {key.curve.name} is not accepted")
        return key
    raise WeakKey(f"unsupported public key type {type(key).__name__}")


def _verify(
    key: CertificatePublicKeyTypes, signature: bytes, data: bytes, hash_name: str, kind: str
) -> None:
    """
    @raise InvalidSignature: if C{signature} is not C{key}'s over C{data} (or
        C{key} is not of the C{kind} the signature algorithm names).
    """
    algorithm = _HASHES[hash_name]()
    if kind == "rsa":
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidSignature()
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    else:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidSignature()
        key.verify(signature, data, ec.ECDSA(algorithm))


def parse_csr(der: bytes) -> CertificationRequest:
    """
    Decode a DER PKCS#10 request leniently and verify its self-signature.

    @raise InvalidCSR: if it is not a request, uses an unknown signature
        algorithm, or its signature does not verify.
    @raise WeakKey: if its key cannot be loaded or is of a kind we never accept.
    """
    if len(der) > MAX_REQUEST_SIZE:
        raise InvalidCSR(f"the certificate request is too large ({len(der)} bytes)")
    try:
        start, end = _whole(der)
        parts = _children(der, start, end)
        if len(parts) != 3 or [tag for tag, _, _ in parts] != [0x30, 0x30, 0x03]:
            raise ValueError("expected certificationRequestInfo, algorithm, signature")
        info = der[parts[0][1] : parts[0][2]]
        _, info_start, info_end = _tlv(der, parts[0][1])
        info_parts = _children(der, info_start, info_end)
        if len(info_parts) < 3 or [tag for tag, _, _ in info_parts[:3]] != [0x02, 0x30, 0x30]:
            raise ValueError("certificationRequestInfo is not version, subject, key")
        spki = der[info_parts[2][1] : info_parts[2][2]]
        _, algorithm_start, algorithm_end = _tlv(der, parts[1][1])
        oid_tag, oid_start, oid_end = _tlv(der, algorithm_start)
        if oid_tag != 0x06 or oid_end > algorithm_end:
            raise ValueError("the signature algorithm is not an OID")
        algorithm = _oid(der[oid_start:oid_end])
        _, bits_start, bits_end = _tlv(der, parts[2][1])
        if bits_end - bits_start < 2 or der[bits_start] != 0:
            raise ValueError("the signature is not a whole number of bytes")
        signature = der[bits_start + 1 : bits_end]
    except (ValueError, PyAsn1Error) as e:
        raise InvalidCSR(f"not a PKCS#10 certificate request: {e}") from None

    known = _SIGNATURE_ALGORITHMS.get(algorithm)
    if known is None:
        raise InvalidCSR(f"unsupported signature algorithm {algorithm}")
    kind, hash_name = known
    public_key = _load_public_key(spki)
    try:
        _verify(public_key, signature, info, hash_name, kind)
    except InvalidSignature:
        raise InvalidCSR("the certificate request's signature does not verify") from None
    return CertificationRequest(der, public_key, algorithm, hash_name, info)


def _extensions(value: bytes) -> list[tuple[str, bool, bytes]]:
    try:
        decoded, _ = der_decoder.decode(value, asn1Spec=rfc5280.Extensions())
    except PyAsn1Error:
        return []  # an unreadable extension request is informational only
    return [
        (str(e["extnID"]), bool(e["critical"]), e["extnValue"].asOctets()) for e in decoded
    ]


def check_key(request: CertificationRequest, min_rsa_bits: int) -> None:
    """
    Enforce the enrollment policy on the requested key.

    @raise WeakKey: naming the key and the minimum.
    """
    key = request.public_key
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < min_rsa_bits:
        raise WeakKey(
            f"the requested RSA key has {key.key_size} bits; at least {min_rsa_bits} are required"
        )


# --- PKCS#7 / CMS SignedData (renewal) ------------------------------------------------------


@dataclass(frozen=True)
class SignedRequest:
    """
    A SignedData whose signature by C{signer} over C{content} has been verified.
    """

    content: bytes
    signer: x509.Certificate
    digest_name: str


def parse_signed_request(der: bytes) -> SignedRequest:
    """
    Decode a PKCS#7/CMS SignedData carrying a request and verify its signer.

    The signer's certificate must be in the SignedData. With signed
    attributes, the message digest must match the content and the signature
    covers the attributes; without, it covers the content. The content is
    returned as is (a renewing Windows device puts a DER PKCS#10 there, or
    its base64 text for a user-initiated renewal: see L{request_from_content}).

    @raise InvalidSignedRequest: naming what is wrong.
    """
    if len(der) > MAX_REQUEST_SIZE:
        raise InvalidSignedRequest(f"the signed request is too large ({len(der)} bytes)")
    try:
        return _parse_signed_request(der)
    except _UNREADABLE as e:
        raise InvalidSignedRequest(f"not a readable PKCS#7 SignedData request: {_reason(e)}") from None


def _parse_signed_request(der: bytes) -> SignedRequest:
    """
    L{parse_signed_request}, which turns what the decoders raise (L{_UNREADABLE}) into its error.
    """
    try:
        info, rest = der_decoder.decode(der, asn1Spec=rfc5652.ContentInfo())
        if rest:
            raise ValueError("trailing bytes")
        if str(info["contentType"]) != _OID_SIGNED_DATA:
            raise ValueError(f"content type {info['contentType']} is not signedData")
        signed, _ = der_decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
        encapsulated = signed["encapContentInfo"]
        if not encapsulated["eContent"].isValue:
            raise ValueError("the request content is detached")
        content = encapsulated["eContent"].asOctets()
        certificates = [
            x509.load_der_x509_certificate(der_encoder.encode(choice["certificate"]))
            for choice in signed["certificates"]
            if choice.getName() == "certificate"
        ] if signed["certificates"].isValue else []
        signer_infos = list(signed["signerInfos"])
        if len(signer_infos) != 1:
            raise ValueError(f"expected one signer, found {len(signer_infos)}")
        signer_info = signer_infos[0]
        signed_attributes = _signed_attributes_bytes(der)
    except (ValueError, PyAsn1Error) as e:
        raise InvalidSignedRequest(f"not a PKCS#7 SignedData request: {e}") from None

    signer = _find_signer(signer_info["sid"], certificates)
    digest_oid = str(signer_info["digestAlgorithm"]["algorithm"])
    digest_name = _DIGEST_ALGORITHMS.get(digest_oid)
    if digest_name is None:
        raise InvalidSignedRequest(f"unsupported digest algorithm {digest_oid}")
    signature_oid = str(signer_info["signatureAlgorithm"]["algorithm"])
    if signature_oid == _OID_RSA_ENCRYPTION:
        kind = "rsa"
    elif signature_oid in _SIGNATURE_ALGORITHMS:
        kind, named_hash = _SIGNATURE_ALGORITHMS[signature_oid]
        if named_hash != digest_name:
            raise InvalidSignedRequest("the signature and digest algorithms disagree")
    else:
        raise InvalidSignedRequest(f"unsupported signature algorithm {signature_oid}")

    if signed_attributes is not None:
        digests = [
            attribute["attrValues"][0]
            for attribute in signer_info["signedAttrs"]
            if str(attribute["attrType"]) == _OID_MESSAGE_DIGEST
        ]
        if len(digests) != 1:
            raise InvalidSignedRequest("the signed attributes lack one messageDigest")
        try:
            expected, _ = der_decoder.decode(bytes(digests[0]), asn1Spec=univ.OctetString())
        except PyAsn1Error:
            raise InvalidSignedRequest("unreadable messageDigest") from None
        if expected.asOctets() != hashlib.new(digest_name, content).digest():
            raise InvalidSignedRequest("the message digest does not match the request")
        signed_bytes = signed_attributes
    else:
        signed_bytes = content
    try:
        _verify(
            signer.public_key(),
            signer_info["signature"].asOctets(),
            signed_bytes,
            digest_name,
            kind,
        )
    except InvalidSignature:
        raise InvalidSignedRequest("the signer's signature does not verify") from None
    return SignedRequest(content=content, signer=signer, digest_name=digest_name)


def request_from_content(content: bytes) -> bytes:
    """
    The DER PKCS#10 inside a renewal's SignedData content (DER, or base64 of it).
    """
    if content[:1] == b"\x30":
        return content
    try:
        return base64.b64decode(b"".join(content.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignedRequest("the signed content is neither DER nor base64") from None


def _signed_attributes_bytes(der: bytes) -> bytes | None:
    """
    The signer's signedAttrs as the DER SET they were signed as (tag [0] → SET), or None.
    """
    start, end = _whole(der)
    content_info = _children(der, start, end)
    if len(content_info) != 2 or content_info[1][0] != 0xA0:
        raise ValueError("malformed ContentInfo")
    _, explicit_start, explicit_end = _tlv(der, content_info[1][1])
    tag, data_start, data_end = _tlv(der, explicit_start)
    if tag != 0x30 or data_end != explicit_end:
        raise ValueError("malformed SignedData")
    signed_data = _children(der, data_start, data_end)
    tag, infos_start, infos_end = _tlv(der, signed_data[-1][1])
    if tag != 0x31:
        raise ValueError("malformed signerInfos")
    first = _children(der, infos_start, infos_end)[0]
    _, info_start, info_end = _tlv(der, first[1])
    for tag, offset, element_end in _children(der, info_start, info_end):
        if tag == 0xA0:
            return b"\x31" + der[offset + 1 : element_end]
    return None


def _find_signer(sid: rfc5652.SignerIdentifier, certificates: list[x509.Certificate]) -> x509.Certificate:
    kind = sid.getName()
    for certificate in certificates:
        if kind == "issuerAndSerialNumber":
            wanted = sid["issuerAndSerialNumber"]
            if int(wanted["serialNumber"]) == certificate.serial_number and der_encoder.encode(
                wanted["issuer"]
            ) == certificate.issuer.public_bytes():
                return certificate
        elif kind == "subjectKeyIdentifier":
            wanted_ski = sid["subjectKeyIdentifier"].asOctets()
            try:
                ski = certificate.extensions.get_extension_for_class(
                    x509.SubjectKeyIdentifier
                ).value.digest
            except x509.ExtensionNotFound:
                ski = x509.SubjectKeyIdentifier.from_public_key(
                    certificate.public_key()
                ).digest
            if ski == wanted_ski:
                return certificate
    raise InvalidSignedRequest("the signer's certificate is not in the signed request")
