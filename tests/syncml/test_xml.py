"""
Tests for L{mdmd.syncml.xml}.
"""

from __future__ import annotations

import re

from hypothesis import given
from twisted.trial.unittest import SynchronousTestCase

from mdmd.errors import PeerError
from mdmd.syncml import xml
from mdmd.syncml.model import (
    Results,
    Alert,
    Atomic,
    Chal,
    Cred,
    Exec,
    Get,
    Item,
    Location,
    Meta,
    Replace,
    Sequence,
    Status,
    SyncHdr,
    SyncML,
    SyncMLDecodeError,
    SyncMLEncodeError,
    UnknownElement,
)
from mdmd.testing import syncml as samples
from tests.syncml.assertions import assert_refused
from tests.syncml.strategies import messages


def _doc(body: bytes, root: bytes = b'<SyncML xmlns="SYNCML:SYNCML1.2">') -> bytes:
    """
    A minimal message around C{body} (the content of SyncBody).
    """
    return (
        root + b"<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID>"
        b"<MsgID>1</MsgID><Target><LocURI>t</LocURI></Target><Source><LocURI>s</LocURI></Source>"
        b"</SyncHdr><SyncBody>" + body + b"</SyncBody></SyncML>"
    )


class WindowsPackage1Tests(SynchronousTestCase):
    def test_decode(self) -> None:
        """
        A Windows-shaped package 1 decodes to the model field by field.
        """
        msg = xml.decode(samples.WINDOWS_PACKAGE1)
        self.assertEqual(
            msg.header,
            SyncHdr(
                session_id="D",
                msg_id="1",
                target=Location(loc_uri=samples.SERVER_URL),
                source=Location(loc_uri=samples.DEVICE_ID, loc_name="dummy"),
                cred=Cred(
                    meta=Meta(format="b64", type="syncml:auth-md5"), data="Zz6EivR3yeaaENcRN6lpAQ=="
                ),
                meta=Meta(max_msg_size=524288),
            ),
        )
        self.assertTrue(msg.final)
        devinfo = [
            ("./DevInfo/DevId", samples.DEVICE_ID),
            ("./DevInfo/Man", "Contoso Ltd."),
            ("./DevInfo/Mod", "Virtual Machine"),
            ("./DevInfo/DmV", "1.3"),
            ("./DevInfo/Lang", "en-US"),
            (
                "./Vendor/MSFT/DMClient/HWDevID",
                "7D3A5F1C9B2E4D6A8C0F1E3D5B7A9C2E4F6A8B0D1C3E5F7A9B2D4C6E8F0A1B3C",
            ),
        ]
        self.assertEqual(
            msg.body,
            (
                Status(cmd_id="1", msg_ref="1", cmd_ref="0", cmd="SyncHdr", data="500"),
                Alert(cmd_id="2", data="1201"),
                Alert(
                    cmd_id="3",
                    data="1224",
                    items=(
                        Item(
                            meta=Meta(type="com.microsoft/MDM/LoginStatus", format="chr"),
                            data="user",
                        ),
                    ),
                ),
                Replace(
                    cmd_id="4",
                    items=tuple(
                        Item(source=Location(loc_uri=uri), data=value) for uri, value in devinfo
                    ),
                ),
            ),
        )

    def test_session_id_stays_text(self) -> None:
        """
        The hex SessionID is kept as the string the device sent.
        """
        msg = xml.decode(samples.WINDOWS_PACKAGE1.replace(b">D<", b">0A0<"))
        self.assertEqual(msg.header.session_id, "0A0")

    def test_pretty_printed(self) -> None:
        """
        Whitespace between elements (a pretty-printed capture) is ignored.
        """
        pretty = re.sub(rb"><", b">\n  <", samples.WINDOWS_PACKAGE1)
        self.assertEqual(xml.decode(pretty), xml.decode(samples.WINDOWS_PACKAGE1))


class EncodeTests(SynchronousTestCase):
    def test_server_message_bytes(self) -> None:
        """
        A package-2 style message encodes to exactly the expected compact bytes.
        """
        msg = SyncML(
            header=samples.header("dev", "https://s/m"),
            body=(
                Status(
                    cmd_id="1",
                    msg_ref="1",
                    cmd_ref="0",
                    cmd="SyncHdr",
                    target_refs=("https://s/m",),
                    source_refs=("dev",),
                    chal=Chal(meta=Meta(format="b64", type="syncml:auth-md5", next_nonce="AAEC")),
                    data="212",
                ),
                Get(cmd_id="2", items=(Item(target=Location(loc_uri="./DevDetail/SwV")),)),
                Replace(
                    cmd_id="3",
                    items=(
                        Item(target=Location(loc_uri="./a"), meta=Meta(format="int"), data="1"),
                    ),
                ),
                Exec(cmd_id="4", items=(Item(target=Location(loc_uri="./x/Unenroll"), data="p"),)),
            ),
        )
        expected = (
            '<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr>'
            "<VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>"
            "<SessionID>D</SessionID><MsgID>1</MsgID><Target><LocURI>dev</LocURI></Target>"
            "<Source><LocURI>https://s/m</LocURI></Source></SyncHdr><SyncBody>"
            "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd>"
            "<TargetRef>https://s/m</TargetRef><SourceRef>dev</SourceRef><Chal><Meta>"
            '<Format xmlns="syncml:metinf">b64</Format>'
            '<Type xmlns="syncml:metinf">syncml:auth-md5</Type>'
            '<NextNonce xmlns="syncml:metinf">AAEC</NextNonce></Meta></Chal>'
            "<Data>212</Data></Status>"
            "<Get><CmdID>2</CmdID><Item><Target><LocURI>./DevDetail/SwV</LocURI></Target></Item></Get>"
            "<Replace><CmdID>3</CmdID><Item><Target><LocURI>./a</LocURI></Target>"
            '<Meta><Format xmlns="syncml:metinf">int</Format></Meta><Data>1</Data></Item></Replace>'
            "<Exec><CmdID>4</CmdID><Item><Target><LocURI>./x/Unenroll</LocURI></Target>"
            "<Data>p</Data></Item></Exec><Final/></SyncBody></SyncML>"
        ).encode()
        self.assertEqual(xml.encode(msg), expected)

    def test_data_escaped_not_cdata(self) -> None:
        """
        C{<}, C{&}, C{>} and CR in Data are escaped, never wrapped in CDATA, and come back intact.
        """
        payload = '<wap-provisioningdoc><characteristic type="a&b"/></wap-provisioningdoc>\r\n'
        msg = SyncML(
            header=samples.server_header(),
            body=(
                Replace(cmd_id="2", items=(Item(target=Location(loc_uri="./p"), data=payload),)),
            ),
        )
        out = xml.encode(msg)
        self.assertNotIn(b"CDATA", out)
        self.assertIn(
            b'<Data>&lt;wap-provisioningdoc&gt;&lt;characteristic type="a&amp;b"/&gt;'
            b"&lt;/wap-provisioningdoc&gt;&#13;\n</Data>",
            out,
        )
        self.assertEqual(xml.decode(out), msg)

    def test_syncml_11_namespace(self) -> None:
        """
        A header with VerDTD 1.1 gets the SyncML 1.1 root namespace.
        """
        header = samples.header("t", "s", ver_dtd="1.1", ver_proto="DM/1.1")
        out = xml.encode(SyncML(header=header))
        self.assertTrue(out.startswith(b'<SyncML xmlns="SYNCML:SYNCML1.1"><SyncHdr>'))

    def test_empty_values(self) -> None:
        """
        Empty text and empty Meta become empty elements and decode back to the same values.
        """
        msg = SyncML(
            header=samples.server_header(),
            body=(
                Get(
                    cmd_id="2",
                    items=(
                        Item(target=Location(loc_uri="./a", loc_name=""), meta=Meta(), data=""),
                    ),
                ),
            ),
        )
        out = xml.encode(msg)
        self.assertIn(b"<LocName/></Target><Meta/><Data/>", out)
        self.assertEqual(xml.decode(out), msg)

    def test_not_encodable(self) -> None:
        """
        Non-UTF-8 bytes, characters XML cannot carry, lone surrogates and
        unknown commands raise L{SyncMLEncodeError}, not a peer error.
        """
        header = samples.server_header()
        for command in (
            Replace(items=(Item(data=b"\xff\x00"),)),
            Replace(items=(Item(data="bell\x07"),)),
            Replace(items=(Item(data="\ud800"),)),
            UnknownElement(name="Sync", cmd_id="2"),
        ):
            with self.assertRaises(SyncMLEncodeError):
                xml.encode(SyncML(header=header, body=(command,)))
        self.assertFalse(issubclass(SyncMLEncodeError, PeerError))

    def test_bytes_data_as_text(self) -> None:
        """
        C{bytes} Data that is UTF-8 text is written as that text.
        """
        msg = SyncML(
            header=samples.server_header(), body=(Replace(items=(Item(data="é".encode()),)),)
        )
        self.assertIn("<Data>é</Data>".encode(), xml.encode(msg))

    @given(messages())
    def test_round_trip(self, msg: SyncML) -> None:
        """
        Any message decodes back to itself, and the encoding has no whitespace between tags.
        """
        out = xml.encode(msg)
        self.assertEqual(xml.decode(out), msg)
        self.assertIsNone(re.search(rb">\s+<[A-Za-z]", out))
        self.assertIsNone(re.search(rb"(/>|</[^>]*>)\s+<", out))


class TolerantDecodeTests(SynchronousTestCase):
    def test_namespaces(self) -> None:
        """
        SyncML 1.1, no namespace at all, prefixed elements, the metinfo typo
        and extra xmlns declarations all decode to the same model.
        """
        body = (
            b"<Get><CmdID>2</CmdID><Item><Target><LocURI>./a</LocURI></Target><Meta>"
            b'<Format xmlns="syncml:metinf">chr</Format></Meta></Item></Get><Final/>'
        )
        reference = xml.decode(_doc(body))
        variants = [
            _doc(body, b'<SyncML xmlns="SYNCML:SYNCML1.1">'),
            _doc(body, b"<SyncML>"),
            _doc(body.replace(b"syncml:metinf", b"syncml:metinfo"), b"<SyncML>"),
            _doc(body.replace(b' xmlns="syncml:metinf"', b""), b'<SyncML xmlns:msft="urn:m">'),
            _doc(
                body.replace(
                    b'<Format xmlns="syncml:metinf">', b'<m:Format xmlns:m="syncml:metinf">'
                ).replace(b"</Format>", b"</m:Format>"),
                b'<s:SyncML xmlns:s="SYNCML:SYNCML1.2" xmlns="SYNCML:SYNCML1.2">',
            ).replace(b"</SyncML>", b"</s:SyncML>"),
        ]
        self.assertEqual(
            reference.body[0],
            Get(cmd_id="2", items=(Item(target=Location(loc_uri="./a"), meta=Meta(format="chr")),)),
        )
        for variant in variants:
            self.assertEqual(xml.decode(variant), reference, variant)

    def test_metinf_wrapper_and_any_order(self) -> None:
        """
        Meta children inside a MetInf wrapper, and children in another order, are read.
        """
        msg = xml.decode(
            _doc(
                b"<Replace><Item><Data>1</Data><Meta><MetInf xmlns='syncml:metinf'><Size>1</Size>"
                b"<Format>int</Format><EMI>a</EMI><EMI>b</EMI></MetInf></Meta>"
                b"<Target><LocURI>./a</LocURI></Target></Item><CmdID>7</CmdID></Replace>"
            )
        )
        self.assertEqual(
            msg.body,
            (
                Replace(
                    cmd_id="7",
                    items=(
                        Item(
                            target=Location(loc_uri="./a"),
                            meta=Meta(format="int", size=1, emi=("a", "b")),
                            data="1",
                        ),
                    ),
                ),
            ),
        )
        self.assertFalse(msg.final)

    def test_missing_cmd_id_and_unknown_elements(self) -> None:
        """
        A command without CmdID keeps C{cmd_id=None}; unknown elements under
        SyncBody, Atomic and Sequence become L{UnknownElement}s.
        """
        msg = xml.decode(
            _doc(
                b"<Get><Item><Target><LocURI>./a</LocURI></Target></Item></Get>"
                b"<Sync><CmdID>3</CmdID><Whatever/></Sync>"
                b"<Atomic><CmdID>4</CmdID><Bogus/></Atomic>"
                b"<Sequence><CmdID>5</CmdID><msft:Thing xmlns:msft='urn:m'><CmdID>6</CmdID>"
                b"</msft:Thing></Sequence>"
            )
        )
        self.assertEqual(
            msg.body,
            (
                Get(items=(Item(target=Location(loc_uri="./a")),)),
                UnknownElement(name="Sync", cmd_id="3"),
                Atomic(cmd_id="4", commands=(UnknownElement(name="Bogus"),)),
                Sequence(cmd_id="5", commands=(UnknownElement(name="Thing", cmd_id="6"),)),
            ),
        )

    def test_nested_atomic_and_get_in_atomic(self) -> None:
        """
        What Windows answers 500/507 for still decodes: the engine decides.
        """
        msg = xml.decode(
            _doc(
                b"<Atomic><CmdID>2</CmdID><Atomic><CmdID>3</CmdID><Get><CmdID>4</CmdID>"
                b"<Item><Target><LocURI>./a</LocURI></Target></Item></Get></Atomic></Atomic>"
            )
        )
        get = Get(cmd_id="4", items=(Item(target=Location(loc_uri="./a")),))
        self.assertEqual(
            msg.body, (Atomic(cmd_id="2", commands=(Atomic(cmd_id="3", commands=(get,)),)),)
        )

    def test_embedded_document(self) -> None:
        """
        Data holding elements becomes their XML text, without the inherited
        SyncML namespace, and is written back escaped.
        """
        msg = xml.decode(
            _doc(
                b"<Replace><CmdID>2</CmdID><Item><Data> <wap-provisioningdoc version='1.1'>"
                b"<characteristic type='a&amp;b'>x&lt;y</characteristic>"
                b"</wap-provisioningdoc>t&amp;"
                b"<DevInf xmlns='syncml:devinf'><Man>m</Man></DevInf></Data><MoreData/></Item>"
                b"<Item><Data>next</Data></Item></Replace>"
            )
        )
        first, second = msg.body[0].items  # type: ignore[attr-defined]
        self.assertTrue(first.more_data)
        self.assertEqual(second, Item(data="next"))
        data = first.data
        self.assertEqual(
            data,
            ' <wap-provisioningdoc version="1.1"><characteristic type="a&amp;b">x&lt;y'
            "</characteristic></wap-provisioningdoc>t&amp;"
            '<DevInf xmlns="syncml:devinf"><Man>m</Man></DevInf>',
        )
        out = xml.encode(msg)
        self.assertIn(b"<Data> &lt;wap-provisioningdoc version=", out)
        self.assertEqual(xml.decode(out), msg)

    def test_external_doctype(self) -> None:
        """
        A DOCTYPE that only names the SyncML DTD (as wbxml2xml writes) is accepted.
        """
        doctype = (
            b'<?xml version="1.0"?><!DOCTYPE SyncML PUBLIC "-//SYNCML//DTD SyncML 1.2//EN" '
            b'"http://www.openmobilealliance.org/tech/DTD/OMA-TS-SyncML_RepPro_DTD-V1_2.dtd">\n'
        )
        expected = xml.decode(_doc(b"<Final/>"))
        self.assertEqual(xml.decode(doctype + _doc(b"<Final/>")), expected)
        self.assertEqual(xml.decode(b"\xef\xbb\xbf" + doctype + _doc(b"<Final/>")), expected)
        self.assertEqual(xml.decode(b"<!DOCTYPE SyncML>" + _doc(b"<Final/>")), expected)

    def test_status_chal_and_refs(self) -> None:
        """
        A device's Status for our header: repeated refs, and a Chal (even one without Meta).
        """
        msg = xml.decode(
            _doc(
                b"<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd>"
                b"<TargetRef>a</TargetRef><TargetRef>b</TargetRef><SourceRef>c</SourceRef>"
                b"<Chal/><Data>401</Data></Status>"
            )
        )
        self.assertEqual(
            msg.body,
            (
                Status(
                    cmd_id="1",
                    msg_ref="1",
                    cmd_ref="0",
                    cmd="SyncHdr",
                    target_refs=("a", "b"),
                    source_refs=("c",),
                    chal=Chal(meta=Meta()),
                    data="401",
                ),
            ),
        )

    def test_alert_correlator_either_side(self) -> None:
        """
        Correlator is read before or after the alert Data.
        """
        a = xml.decode(
            _doc(b"<Alert><CmdID>2</CmdID><Correlator>c</Correlator><Data>1226</Data></Alert>")
        )
        b = xml.decode(
            _doc(b"<Alert><CmdID>2</CmdID><Data>1226</Data><Correlator>c</Correlator></Alert>")
        )
        self.assertEqual(a, b)
        self.assertEqual(a.body[0], Alert(cmd_id="2", data="1226", correlator="c"))


class ControlCharacterTests(SynchronousTestCase):
    """
    C0 control characters XML forbids, in a device's message (libdmclient ends values with NUL).
    """

    def results(self, data: bytes) -> object:
        body = (
            b"<Results><CmdID>3</CmdID><MsgRef>1</MsgRef><CmdRef>4</CmdRef><Item><Source><LocURI>./a</LocURI>"
            b"</Source><Data>" + data + b"</Data></Item></Results><Final/>"
        )
        results = xml.decode(_doc(body)).body[0]
        assert isinstance(results, Results)
        return results.items[0].data

    def test_nul_dropped(self) -> None:
        """
        A NUL (a C string's end) is dropped: the message decodes, the value is what the device meant.
        """
        self.assertEqual(self.results(b"leaf\x00"), "leaf")
        self.assertEqual(self.results(b"a\x00b\x00"), "ab")

    def test_other_controls_replaced(self) -> None:
        """
        Other forbidden C0 controls (ESC, BEL, form feed...) become U+FFFD; tab, LF and CR stay.
        """
        self.assertEqual(self.results(b"red\x1b[31m\x07\x0c"), "red\ufffd[31m\ufffd\ufffd")
        self.assertEqual(self.results(b"a\tb\nc"), "a\tb\nc")

    def test_lenient(self) -> None:
        """
        Bytes are changed only where they must be; UTF-16 documents are left alone.
        """
        self.assertEqual(xml.lenient(b"<a>\xc3\xa9</a>"), b"<a>\xc3\xa9</a>")
        self.assertEqual(xml.lenient(b"<a>\x00\x01</a>"), b"<a>\xef\xbf\xbd</a>")
        wide = "<a/>".encode("utf-16")
        self.assertEqual(xml.lenient(wide), wide)

    def test_parser_still_strict(self) -> None:
        """
        A character reference to NUL, and a DOCTYPE with entities, are still refused.
        """
        self.assertRaises(SyncMLDecodeError, self.results, b"&#0;")
        doc = b'<!DOCTYPE SyncML [<!ENTITY a "x\x00">]>' + _doc(b"")
        assert_refused(self, xml.decode, doc, "document type")


class DecodeErrorTests(SynchronousTestCase):
    def assertDecodeError(self, data: bytes, fragment: str) -> None:
        assert_refused(self, xml.decode, data, fragment)

    def test_garbage(self) -> None:
        """
        Garbage, empty input and broken XML raise L{SyncMLDecodeError} (a L{PeerError}).
        """
        for data in (b"", b"  ", b"\x00\xff\x10", b"not xml", b"<SyncML>", _doc(b"")[:-3]):
            self.assertRaises(SyncMLDecodeError, xml.decode, data)
        self.assertTrue(issubclass(SyncMLDecodeError, PeerError))

    def test_structure(self) -> None:
        """
        Each structural problem is named in the error.
        """
        self.assertDecodeError(b"<html><body/></html>", "root element is <html>")
        self.assertDecodeError(b"<SyncML><SyncBody/></SyncML>", "no <SyncHdr>")
        self.assertDecodeError(_doc(b"").replace(b"<SyncBody></SyncBody>", b""), "no <SyncBody>")
        self.assertDecodeError(
            _doc(b"").replace(b"<SessionID>1</SessionID>", b""), "no <SessionID>"
        )
        self.assertDecodeError(_doc(b"").replace(b"<MsgID>1</MsgID>", b""), "no <MsgID>")
        self.assertDecodeError(
            _doc(b"").replace(b"<Target><LocURI>t</LocURI></Target>", b"<Target/>"),
            "<Target> has no <LocURI>",
        )
        self.assertDecodeError(
            _doc(b"<Get><Item><Meta><MaxObjSize>lots</MaxObjSize></Meta></Item></Get>"),
            "<MaxObjSize> is not a byte count",
        )

    def test_doctype_with_subset_refused(self) -> None:
        """
        A DOCTYPE with an internal subset (entities) is still refused.
        """
        doc = b'<!DOCTYPE SyncML [<!ENTITY a "x">]>' + _doc(b"")
        self.assertDecodeError(doc, "document type")

    def test_too_deep(self) -> None:
        """
        Absurd nesting is refused with a clear message.
        """
        deep = b"<Sequence>" * 70 + b"</Sequence>" * 70
        self.assertDecodeError(_doc(deep), "nest deeper")
