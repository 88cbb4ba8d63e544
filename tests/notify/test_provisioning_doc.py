"""
Tests for L{mdmd.notify.provisioning_doc}: the model, its XML, its WBXML
(golden bytes, and libwbxml reading ours and writing the same document),
the token tables, and the w7 DM account.
"""

from __future__ import annotations

import re

from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify import provisioning_doc as cp
from mdmd.notify.provisioning_doc import (
    BootstrapAccount,
    Characteristic,
    DMCredential,
    Parm,
    ProvisioningDoc,
    account_document,
    to_wbxml,
    to_xml,
)
from mdmd.xmlparser import parse

from .cp import NO_LIBWBXML, WBXML2XML, XML2WBXML, decoded_by_libwbxml, libwbxml, read_prov_xml

SMALL = BootstrapAccount(
    server_id="S",
    name="N",
    address="https://h/",
    server=DMCredential("DIGEST", "S", "p", b"\x01"),
    client=DMCredential("BASIC", "c", "q", b""),
)

#: L{SMALL}'s document, token by token (ProvCont section 7).
SMALL_WBXML = b"".join(
    [
        bytes.fromhex("030B6A00"),  # WBXML 1.3, PROV 1.0, UTF-8, no string table
        bytes.fromhex("C545") + b"\x031.1\x00" + b"\x01",  # <wap-provisioningdoc version="1.1">
        bytes.fromhex("C6 0001 55 01"),  # <characteristic type="APPLICATION"> (attribute page 1)
        bytes.fromhex("87 36 06") + b"\x03w7\x00\x01",  # APPID, value "w7"
        bytes.fromhex("87 38 06") + b"\x03S\x00\x01",  # PROVIDER-ID
        bytes.fromhex("87 07 06") + b"\x03N\x00\x01",  # NAME (page 1 has it too: no switch)
        bytes.fromhex("87 34 06") + b"\x03https://h/\x00\x01",  # ADDR
        bytes.fromhex("87 05") + b"\x03INIT\x00\x01",  # name="INIT": no token of its own
        bytes.fromhex("C6 57 01"),  # <characteristic type="APPAUTH">
        bytes.fromhex("87 30 06 8D 01"),  # AAUTHLEVEL APPSRV (a value token)
        bytes.fromhex("87 33 06 93 01"),  # AAUTHTYPE DIGEST (a value token)
        bytes.fromhex("87 31 06") + b"\x03S\x00\x01",  # AAUTHNAME
        bytes.fromhex("87 32 06") + b"\x03p\x00\x01",  # AAUTHSECRET
        bytes.fromhex("87 2F 06") + b"\x03AQ==\x00\x01",  # AAUTHDATA: base64 of the nonce
        b"\x01",  # </characteristic>
        bytes.fromhex("C6 57 01"),  # <characteristic type="APPAUTH">
        bytes.fromhex("87 30 06") + b"\x03CLIENT\x00\x01",  # AAUTHLEVEL CLIENT (inline)
        bytes.fromhex("87 33 06 92 01"),  # AAUTHTYPE BASIC
        bytes.fromhex("87 31 06") + b"\x03c\x00\x01",
        bytes.fromhex("87 32 06") + b"\x03q\x00\x01",  # no AAUTHDATA: no nonce
        b"\x01\x01\x01",  # </characteristic></characteristic></wap-provisioningdoc>
    ]
)

SMALL_XML = (
    '<?xml version="1.0"?>'
    '<!DOCTYPE wap-provisioningdoc PUBLIC "-//WAPFORUM//DTD PROV 1.0//EN" '
    '"http://www.wapforum.org/DTD/prov.dtd">'
    '<wap-provisioningdoc version="1.1"><characteristic type="APPLICATION">'
    '<parm name="APPID" value="w7"/><parm name="PROVIDER-ID" value="S"/>'
    '<parm name="NAME" value="N"/><parm name="ADDR" value="https://h/"/><parm name="INIT"/>'
    '<characteristic type="APPAUTH"><parm name="AAUTHLEVEL" value="APPSRV"/>'
    '<parm name="AAUTHTYPE" value="DIGEST"/><parm name="AAUTHNAME" value="S"/>'
    '<parm name="AAUTHSECRET" value="p"/><parm name="AAUTHDATA" value="AQ=="/></characteristic>'
    '<characteristic type="APPAUTH"><parm name="AAUTHLEVEL" value="CLIENT"/>'
    '<parm name="AAUTHTYPE" value="BASIC"/><parm name="AAUTHNAME" value="c"/>'
    '<parm name="AAUTHSECRET" value="q"/></characteristic>'
    "</characteristic></wap-provisioningdoc>"
).encode()

REALISTIC = BootstrapAccount(
    server_id="com.example.mdm",
    name="Example MDM",
    address="https://mdm.example.com:8443/ManagementServer/MDM.svc",
    server=DMCredential("DIGEST", "com.example.mdm", "Zx9-server-secret_32chars_xxxxxx", bytes(range(16))),
    client=DMCredential("HMAC", "modem-0042", "client & <secret> \"quoted\"", b"\xff" * 16),
)

#: A document on code page 0 only (WAP-183 connectivity).
NAPDEF = ProvisioningDoc(
    (
        Characteristic(
            "NAPDEF",
            (
                Parm("NAME", "Operator GPRS"),
                Parm("NAPID", "GPRS1"),
                Parm("BEARER", "GSM-GPRS"),
                Parm("NAP-ADDRESS", "internet.example"),
                Parm("NAP-ADDRTYPE", "APN"),
                Characteristic("NAPAUTHINFO", (Parm("AUTHTYPE", "PAP"), Parm("AUTHNAME", "user"))),
                Characteristic("VALIDITY"),
            ),
        ),
        Characteristic("PXLOGICAL", (Parm("PROXY-ID", "proxy1"), Parm("TRUST"))),
    ),
    version="1.0",
)


class ModelTests(SynchronousTestCase):
    def test_account_document(self) -> None:
        """
        The w7 APPLICATION: APPID, PROVIDER-ID, NAME, ADDR, INIT, then
        APPAUTH APPSRV with the server's credential and APPAUTH CLIENT with
        the device's (OMA's reading), each nonce in base64; no AAUTHDATA
        without a nonce.
        """
        ((application,),) = [account_document(REALISTIC).characteristics]
        self.assertEqual(application.type, "APPLICATION")
        parms = [c for c in application.children if isinstance(c, Parm)]
        self.assertEqual(
            parms,
            [
                Parm("APPID", "w7"),
                Parm("PROVIDER-ID", "com.example.mdm"),
                Parm("NAME", "Example MDM"),
                Parm("ADDR", "https://mdm.example.com:8443/ManagementServer/MDM.svc"),
                Parm("INIT"),
            ],
        )
        server, client = [c for c in application.children if isinstance(c, Characteristic)]
        self.assertEqual(
            server,
            Characteristic(
                "APPAUTH",
                (
                    Parm("AAUTHLEVEL", "APPSRV"),
                    Parm("AAUTHTYPE", "DIGEST"),
                    Parm("AAUTHNAME", "com.example.mdm"),
                    Parm("AAUTHSECRET", "Zx9-server-secret_32chars_xxxxxx"),
                    Parm("AAUTHDATA", "AAECAwQFBgcICQoLDA0ODw=="),
                ),
            ),
        )
        self.assertEqual(client.children[:3], (Parm("AAUTHLEVEL", "CLIENT"), Parm("AAUTHTYPE", "HMAC"), Parm("AAUTHNAME", "modem-0042")))
        self.assertEqual(client.children[4], Parm("AAUTHDATA", "/////////////////////w=="))
        small_client = account_document(SMALL).characteristics[0].children[-1]
        assert isinstance(small_client, Characteristic)
        self.assertNotIn("AAUTHDATA", [p.name for p in small_client.children if isinstance(p, Parm)])

    def test_secrets_not_in_repr(self) -> None:
        """
        A credential's repr shows neither its secret nor its nonce.
        """
        text = repr(REALISTIC)
        self.assertNotIn("Zx9-server-secret", text)
        self.assertNotIn("client & <secret>", text)
        self.assertIn("modem-0042", text)


class XMLTests(SynchronousTestCase):
    def test_small_document(self) -> None:
        """
        The XML form is compact, with the PROV 1.0 DOCTYPE.
        """
        self.assertEqual(to_xml(account_document(SMALL)), SMALL_XML)

    def test_escaping(self) -> None:
        """
        &, <, > and " in values are escaped; the XML reads back to the same model.
        """
        document = account_document(REALISTIC)
        text = to_xml(document)
        self.assertIn(b'value="client &amp; &lt;secret&gt; &quot;quoted&quot;"', text)
        self.assertEqual(read_prov_xml(text), document)

    def test_empty_characteristic_and_valueless_parm(self) -> None:
        """
        A characteristic without children and a parm without value are empty elements.
        """
        self.assertIn(b'<characteristic type="VALIDITY"/>', to_xml(NAPDEF))
        self.assertIn(b'<parm name="TRUST"/>', to_xml(NAPDEF))


class WBXMLTests(SynchronousTestCase):
    def test_golden_bytes(self) -> None:
        """
        The small w7 document encodes token by token as ProvCont section 7
        says (see L{SMALL_WBXML}).
        """
        self.assertEqual(to_wbxml(account_document(SMALL)), SMALL_WBXML)

    def test_page0_tokens(self) -> None:
        """
        A page-0 document: NAPDEF (0x55 on page 0, not APPLICATION), the
        version="1.0" token, BEARER GSM-GPRS as value token 0xAB, an empty
        characteristic without content, a valueless parm.
        """
        encoded = to_wbxml(NAPDEF)
        self.assertTrue(encoded.startswith(bytes.fromhex("030B6A00 C5 46 01 C6 55 01")))
        self.assertIn(bytes.fromhex("87 10 06 AB 01"), encoded)  # BEARER GSM-GPRS
        self.assertIn(bytes.fromhex("87 09 06 89 01"), encoded)  # NAP-ADDRTYPE APN
        self.assertIn(bytes.fromhex("86 54 01"), encoded)  # <characteristic type="VALIDITY"/>
        self.assertIn(bytes.fromhex("87 2A 01"), encoded)  # <parm name="TRUST"/>
        self.assertNotIn(bytes((0x00, 0x01, 0x55)), encoded)  # never switched to page 1

    def test_nul_refused(self) -> None:
        """
        A NUL cannot be carried inline: ValueError.
        """
        with self.assertRaises(ValueError):
            to_wbxml(ProvisioningDoc((Characteristic("APPLICATION", (Parm("NAME", "a\x00b"),)),)))


class LibwbxmlTests(SynchronousTestCase):
    """
    Our bytes against libwbxml, which knows the PROV language.
    """

    if NO_LIBWBXML:
        skip = NO_LIBWBXML

    def test_libwbxml_reads_our_golden_bytes(self) -> None:
        """
        wbxml2xml reads L{SMALL_WBXML} as exactly the small document.
        """
        self.assertEqual(decoded_by_libwbxml(SMALL_WBXML), account_document(SMALL))

    def test_libwbxml_reads_ours(self) -> None:
        """
        wbxml2xml reads our encoding of a realistic w7 document and of a
        page-0 document as the documents we encoded.
        """
        for document in (account_document(REALISTIC), NAPDEF):
            self.assertEqual(decoded_by_libwbxml(to_wbxml(document)), document)

    def test_libwbxml_writes_the_same_document(self) -> None:
        """
        xml2wbxml's encoding of our XML decodes to the same document as our
        bytes; it switches back to page 0 where we stay on page 1, so ours
        are shorter.
        """
        assert XML2WBXML is not None
        document = account_document(REALISTIC)
        theirs = libwbxml(XML2WBXML, ["-n"], to_xml(document))
        self.assertEqual(decoded_by_libwbxml(theirs), decoded_by_libwbxml(to_wbxml(document)))
        self.assertLess(len(to_wbxml(document)), len(theirs))

    def test_page0_document_identical(self) -> None:
        """
        Where no page choice arises (page 0 only), our bytes are
        xml2wbxml's (without a string table), byte for byte.
        """
        assert XML2WBXML is not None
        self.assertEqual(libwbxml(XML2WBXML, ["-n"], to_xml(NAPDEF)), to_wbxml(NAPDEF))

    def test_every_table_token(self) -> None:
        """
        Every attribute-start and attribute-value token of both code pages,
        written raw (one parm each, after a SWITCH_PAGE to its page), reads
        back in libwbxml as the attribute and value our table gives it.
        """
        body = bytearray()
        expected: list[tuple[str, str | None]] = []
        for page, table in enumerate(cp._ATTRIBUTE_STARTS):
            for (name, value), token in table.items():
                body += bytes((0x87, 0x00, page, token, 0x01))
                expected.append((name, value or ""))
        for page, values in enumerate(cp._ATTRIBUTE_VALUES):
            for value, token in values.items():
                # name= (page 0 token 0x05), then the value token on its page
                body += bytes((0x87, 0x00, 0x00, 0x05, 0x00, page, token, 0x01))
                expected.append(("name", value))
        wbxml = bytes.fromhex("030B6A00 C5 45 03") + b"1.1\x00\x01" + bytes(body) + b"\x01"
        assert WBXML2XML is not None
        root = parse(re.sub(rb"<!DOCTYPE[^>]*>", b"", libwbxml(WBXML2XML, ["-m", "0"], wbxml)))
        self.assertEqual([tuple(parm.attrib.items()) for parm in root], [(e,) for e in expected])
