"""
The checks a Windows device makes on the provisioning document it is given.

A device acts on the wap-provisioningdoc of the RequestSecurityTokenResponse
without asking again, so these checks are as strict as a device must be to
rely on it: our roots only (each characteristic named by its thumbprint: the
server's CA, and the root of an operator's TLS chain), a client certificate
that chains to the first, is for client authentication,
names the DeviceID and holds the device's key, an HTTPS DM address, a
certificate search that selects that certificate, both w7 APPAUTH
credentials (CLIENT by digest, APPSRV naming the device) with different
non-empty nonces, and a DMClient provider with a poll schedule. The first
problem found is raised as L{ProvisioningError}; what a device keeps is an
L{Enrollment}.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree

from mdmd.enroll import soap as ns
from mdmd.enroll.provisioning import Characteristic, parse_document

__all__ = [
    "AppAuth",
    "Enrollment",
    "ProvisioningError",
    "check_enrollment_document",
    "check_renewal_document",
    "document_from_answer",
]


class ProvisioningError(Exception):
    """
    The provisioning document is not one a Windows device could rely on.
    """


@dataclass
class AppAuth:
    """
    One w7 APPAUTH credential as the device holds it. C{nonce} is raw bytes
    and changes as DM sessions send new ones.
    """

    level: str
    auth_type: str
    name: str
    secret: str
    nonce: bytes


@dataclass(frozen=True)
class Enrollment:
    """
    What an enrollment gave the device.
    """

    certificate: x509.Certificate
    #: the root that issued C{certificate} (the server's CA)
    root: x509.Certificate
    document: Characteristic
    dm_url: str
    provider_id: str
    store: str
    client_auth: AppAuth
    server_auth: AppAuth
    #: every root provisioned in Root/System, C{root} first
    roots: tuple[x509.Certificate, ...] = ()


_EMPTY = Characteristic("", (), ())


def document_from_answer(payload: etree._Element) -> Characteristic:
    """
    The provisioning document a RequestSecurityTokenResponse carries (base64
    in its BinarySecurityToken), parsed.
    """
    token = payload.find(f".//{{{ns.WSSE}}}BinarySecurityToken")
    if token is None:
        raise ProvisioningError("the answer carries no BinarySecurityToken")
    return parse_document(base64.b64decode(ns.text(token)))


def _check_client_certificate(
    certificate: x509.Certificate,
    thumbprint: str,
    device_id: str,
    key: rsa.RSAPrivateKey | None,
    root: x509.Certificate,
) -> None:
    if hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER)).hexdigest().upper() != thumbprint:
        raise ProvisioningError("the client certificate's characteristic is not its thumbprint")
    try:
        certificate.verify_directly_issued_by(root)
    except Exception as e:
        raise ProvisioningError(f"the client certificate does not chain to the root: {e}") from None
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise ProvisioningError("the client certificate has no extended key usage") from None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise ProvisioningError("the client certificate is not for client authentication")
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [device_id]:
        raise ProvisioningError(f"the client certificate names {certificate.subject.rfc4514_string()}")
    if key is not None and certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ProvisioningError("the client certificate is not for the device's key")


def _app_auth(characteristic: Characteristic) -> AppAuth:
    level = characteristic.parm("AAUTHLEVEL") or ""
    auth_type = characteristic.parm("AAUTHTYPE") or ""
    secret = characteristic.parm("AAUTHSECRET") or ""
    data = characteristic.parm("AAUTHDATA") or ""
    try:
        nonce = base64.b64decode(data, validate=True)
    except ValueError:
        raise ProvisioningError(f"APPAUTH {level}: AAUTHDATA is not base64") from None
    if not secret or len(nonce) < 8:
        raise ProvisioningError(f"APPAUTH {level}: the secret or the nonce is missing")
    return AppAuth(level, auth_type, characteristic.parm("AAUTHNAME") or "", secret, nonce)


def check_enrollment_document(
    document: Characteristic,
    device_id: str,
    key: rsa.RSAPrivateKey | None,
    trust_roots: Sequence[x509.Certificate],
) -> Enrollment:
    """
    Check a provisioning document as a device relies on it; the identity it gives.

    @raise ProvisioningError: naming the first problem.
    """
    kinds = [c.type for c in document.children]
    if sorted(kinds) != ["APPLICATION", "CertificateStore", "DMClient"]:
        raise ProvisioningError(f"unexpected top-level characteristics {kinds}")
    roots = list((document.get("CertificateStore", "Root", "System") or _EMPTY).children)
    if not roots:
        raise ProvisioningError("expected a root certificate, found none")
    provisioned = []
    for characteristic in roots:
        found = x509.load_der_x509_certificate(base64.b64decode(characteristic.parm("EncodedCertificate") or ""))
        if hashlib.sha1(found.public_bytes(serialization.Encoding.DER)).hexdigest().upper() != characteristic.type:
            raise ProvisioningError("the root's characteristic is not its thumbprint")
        if trust_roots and found not in trust_roots:
            raise ProvisioningError("the provisioned root is not the server's CA")
        provisioned.append(found)
    root = provisioned[0]
    my = document.get("CertificateStore", "My")
    stores = [c for c in (my.children if my else ()) if c.type in ("User", "System")]
    if len(stores) != 1:
        raise ProvisioningError("expected the client certificate in My/User or My/System")
    store = stores[0]
    certificates = [c for c in store.children if c.parm("EncodedCertificate")]
    if len(certificates) != 1 or store.get("PrivateKeyContainer") is None:
        raise ProvisioningError("expected one client certificate and a PrivateKeyContainer")
    certificate = x509.load_der_x509_certificate(base64.b64decode(certificates[0].parm("EncodedCertificate") or ""))
    _check_client_certificate(certificate, certificates[0].type, device_id, key, root)

    application = document.get("APPLICATION") or _EMPTY
    if application.parm("APPID") != "w7":
        raise ProvisioningError("APPLICATION is not w7")
    provider_id = application.parm("PROVIDER-ID") or ""
    dm_url = application.parm("ADDR") or ""
    if not dm_url.startswith("https://"):
        raise ProvisioningError(f"the DM address {dm_url!r} is not HTTPS")
    criteria = dict(part.partition("=")[::2] for part in (application.parm("SSLCLIENTCERTSEARCHCRITERIA") or "").split("&"))
    if unquote(criteria.get("Subject", "")) != certificate.subject.rfc4514_string() or unquote(
        criteria.get("Stores", "")
    ) != "My\\" + store.type:
        raise ProvisioningError(f"SSLCLIENTCERTSEARCHCRITERIA {criteria} does not select the certificate")
    auths = {_app_auth(c).level: _app_auth(c) for c in application.all("APPAUTH")}
    if set(auths) != {"CLIENT", "APPSRV"}:
        raise ProvisioningError(f"expected APPAUTH CLIENT and APPSRV, found {sorted(auths)}")
    if auths["CLIENT"].auth_type != "DIGEST" or not auths["APPSRV"].name:
        raise ProvisioningError("APPAUTH CLIENT must be DIGEST and APPSRV must name the device")
    if auths["CLIENT"].nonce == auths["APPSRV"].nonce:
        raise ProvisioningError("the CLIENT and APPSRV nonces are the same")
    provider = document.get("DMClient", "Provider", provider_id)
    if not provider_id or provider is None or provider.get("Poll") is None:
        raise ProvisioningError("DMClient/Provider does not match PROVIDER-ID or has no Poll schedule")
    auths["CLIENT"].name = auths["CLIENT"].name or provider_id
    return Enrollment(
        certificate=certificate,
        root=root,
        roots=tuple(provisioned),
        document=document,
        dm_url=dm_url,
        provider_id=provider_id,
        store=store.type,
        client_auth=auths["APPSRV"],
        server_auth=auths["CLIENT"],
    )


def check_renewal_document(
    document: Characteristic, device_id: str, key: rsa.RSAPrivateKey | None, enrollment: Enrollment
) -> x509.Certificate:
    """
    Check the document of a renewal against the enrollment it renews; the new
    client certificate, for C{key}.

    A renewal replaces only the certificate: one new certificate in the
    enrollment's store, chaining to the same root, for the same provider.

    @raise ProvisioningError: naming the first problem.
    """
    store = document.get("CertificateStore", "My", enrollment.store)
    certificates = [c for c in (store.children if store else ()) if c.parm("EncodedCertificate")]
    if len(certificates) != 1 or certificates[0].get("PrivateKeyContainer") is None:
        raise ProvisioningError("the renewal document does not hold one new certificate")
    certificate = x509.load_der_x509_certificate(base64.b64decode(certificates[0].parm("EncodedCertificate") or ""))
    _check_client_certificate(certificate, certificates[0].type, device_id, key, enrollment.root)
    if (document.get("APPLICATION") or _EMPTY).parm("PROVIDER-ID") != enrollment.provider_id:
        raise ProvisioningError("the renewal document names another provider")
    return certificate
