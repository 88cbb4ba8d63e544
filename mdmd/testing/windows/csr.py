"""
Certificate requests as Windows enrollment clients build them.

Real clients send PKCS#10 requests in two shapes, and mdmd must take both:
L{modern_csr} is what Windows 11 sends (a UTF8String CN, SHA-256);
L{legacy_csr} is what older Windows 10 builds send, which is not even valid
DER (a PrintableString CN holding C{!} and a NUL, signed under the ISO
sha1WithRSA OID 1.3.14.3.2.29). A renewal wraps the new request in a PKCS#7
SignedData made with the current certificate's key (L{renewal_request}).
"""

from __future__ import annotations

import base64
import uuid
import warnings
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import char, univ
from pyasn1_modules import rfc2986, rfc5280

__all__ = ["CSR_SHAPES", "OID_DEVICE_ID", "legacy_csr", "modern_csr", "renewal_request"]

#: Microsoft's DeviceID request extension (the DeviceID in UTF-8, NUL-terminated).
OID_DEVICE_ID = "1.3.6.1.4.1.311.66.1.0"


def _common_name(device_id: str) -> str:
    return f"{device_id}!{uuid.uuid5(uuid.NAMESPACE_OID, device_id).hex}"


def modern_csr(
    key: rsa.RSAPrivateKey,
    device_id: str,
    algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None,
) -> bytes:
    """
    A Windows 11 style request: UTF8String CN C{<DeviceID>!<hex>}, the DeviceID
    extension, EKU clientAuth, signed with SHA-256 (DER).
    """
    with warnings.catch_warnings():
        # Windows exceeds the 64-character upper bound of a CN here; so do we
        warnings.simplefilter("ignore", UserWarning)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _common_name(device_id), _validate=False)])
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_DEVICE_ID), device_id.encode() + b"\0"),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, algorithm or hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.DER)


def legacy_csr(key: rsa.RSAPrivateKey, device_id: str, signature_oid: str = "1.3.14.3.2.29") -> bytes:
    """
    An older Windows 10 style request, built by hand: a PrintableString CN
    holding C{!} and a trailing NUL (not DER-valid, which C{cryptography}
    refuses), the DeviceID extension only, signed with SHA-1 under the ISO
    OID 1.3.14.3.2.29.
    """
    info = rfc2986.CertificationRequestInfo()
    info["version"] = 0
    name_value = rfc5280.AttributeTypeAndValue()
    name_value["type"] = rfc5280.id_at_commonName
    name_value["value"] = der_encoder.encode(char.PrintableString(_common_name(device_id) + "\0"))
    rdn = rfc5280.RelativeDistinguishedName()
    rdn.append(name_value)
    sequence = rfc5280.RDNSequence()
    sequence.append(rdn)
    info["subject"]["rdnSequence"] = sequence
    spki_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki, _ = der_decoder.decode(spki_der, asn1Spec=rfc5280.SubjectPublicKeyInfo())
    info["subjectPKInfo"]["algorithm"]["algorithm"] = spki["algorithm"]["algorithm"]
    info["subjectPKInfo"]["algorithm"]["parameters"] = spki["algorithm"]["parameters"]
    info["subjectPKInfo"]["subjectPublicKey"] = spki["subjectPublicKey"]
    extension = rfc5280.Extension()
    extension["extnID"] = univ.ObjectIdentifier(OID_DEVICE_ID)
    extension["critical"] = False
    extension["extnValue"] = univ.OctetString(device_id.encode() + b"\0")
    extensions = rfc5280.Extensions()
    extensions.append(extension)
    attribute = rfc2986.Attribute()
    attribute["type"] = univ.ObjectIdentifier("1.2.840.113549.1.9.14")
    attribute["values"].append(der_encoder.encode(extensions))
    info["attributes"].append(attribute)
    tbs = der_encoder.encode(info)
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    request = rfc2986.CertificationRequest()
    request["certificationRequestInfo"] = info
    request["signatureAlgorithm"]["algorithm"] = univ.ObjectIdentifier(signature_oid)
    request["signatureAlgorithm"]["parameters"] = der_encoder.encode(univ.Null())
    request["signature"] = univ.BitString.fromOctetString(signature)
    return bytes(der_encoder.encode(request))


#: The request builders by the name a L{WindowsDevice<mdmd.testing.windows.device.WindowsDevice>} takes.
CSR_SHAPES: dict[str, Callable[[rsa.RSAPrivateKey, str], bytes]] = {"modern": modern_csr, "legacy": legacy_csr}


def renewal_request(
    certificate: x509.Certificate,
    key: rsa.RSAPrivateKey,
    csr_der: bytes,
    base64_content: bool = False,
) -> bytes:
    """
    The PKCS#7 SignedData of a renewal: the new request signed with the current
    certificate's key (OpenSSL's CMS encoder, via C{cryptography}). Automatic
    (ROBO) renewals carry the DER request; user-initiated ones its base64.
    """
    content = base64.b64encode(csr_der) if base64_content else csr_der
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(certificate, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
