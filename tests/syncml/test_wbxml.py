"""
Tests for L{mdmd.syncml.wbxml}, including interoperability with libwbxml's tools.

libwbxml (Debian C{libwbxml2-utils}) is the independent peer. Flags used:

  - C{xml2wbxml -v 1.2 -k -n}: WBXML 1.2 output; C{-k} keeps text exactly
    (without it libwbxml trims leading/trailing whitespace of every text
    node); C{-n} writes no string table (the default writes one, which we
    test too). The language is detected from the root namespace.
  - C{wbxml2xml -k -m 0}: compact output that keeps text exactly. The
    language comes from the public identifier. Its output starts with a
    DOCTYPE naming the SyncML DTD, which L{mdmd.syncml.xml} accepts.

Where libwbxml and the reference notes differ, the tests follow libwbxml:
it writes C{Data} under C{Add}/C{Replace} as C{OPAQUE} (we get C{bytes}
with the same text) and reads C{OPAQUE} there back as CDATA.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import fields, is_dataclass, replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.syncml import wbxml, xml
from mdmd.syncml.model import (
    Add,
    Alert,
    Atomic,
    Cred,
    Delete,
    Exec,
    Get,
    Item,
    Location,
    Meta,
    Replace,
    Results,
    Status,
    SyncML,
    SyncMLDecodeError,
    SyncMLEncodeError,
    UnknownElement,
)
from mdmd.syncml.wbxml import WBXMLDecodeError
from mdmd.testing import syncml as samples
from tests.syncml.assertions import assert_decodes_or_refuses, assert_refused
from tests.syncml.strategies import messages

#: The worked example of the reference notes (PROTOCOLS.md section 4.6), 144 bytes.
EXAMPLE_BYTES = b"".join(
    [
        b"\x02\xa4\x01\x6a\x00",  # WBXML 1.2, public id 0x1201, UTF-8, no string table
        b"\x6d\x6c",  # <SyncML><SyncHdr>
        b"\x71\x031.2\x00\x01",  # <VerDTD>1.2</VerDTD>
        b"\x72\x03DM/1.2\x00\x01\x65\x031\x00\x01\x5b\x031\x00\x01",
        b"\x6e\x57\x03dev1\x00\x01\x01",  # <Target><LocURI>dev1</LocURI></Target>
        b"\x67\x57\x03https://s/x\x00\x01\x01\x01",  # <Source>...</Source></SyncHdr>
        b"\x6b\x69\x4b\x031\x00\x01\x5c\x031\x00\x01\x4c\x030\x00\x01",
        b"\x4a\x03SyncHdr\x00\x01\x4f\x03200\x00\x01\x01",
        b"\x53\x4b\x032\x00\x01\x54\x6e\x57\x03./DevDetail/SwV\x00\x01\x01",
        b"\x5a\x00\x01\x47\x03chr\x00\x01\x01",  # <Meta> page 1 <Format>chr</Format></Meta>
        b"\x01\x01\x00\x00\x12\x01\x01",  # </Item></Get> page 0 <Final/></SyncBody></SyncML>
    ]
)
EXAMPLE = SyncML(
    header=samples.header("dev1", "https://s/x", session_id="1"),
    body=(
        Status(cmd_id="1", msg_ref="1", cmd_ref="0", cmd="SyncHdr", data="200"),
        Get(
            cmd_id="2",
            items=(Item(target=Location(loc_uri="./DevDetail/SwV"), meta=Meta(format="chr")),),
        ),
    ),
    final=True,
)
_PREFIX = bytes.fromhex("02a4016a00")


def _document(body: bytes, head: bytes = b"\x02\xa4\x01\x6a", strtbl: bytes = b"") -> bytes:
    """
    A WBXML document: C{head} (version, public id, charset), the string table, C{body}.
    """
    return head + bytes([len(strtbl)]) + strtbl + body


def _body(msg: SyncML) -> bytes:
    """
    Our encoding of C{msg} without its document header.
    """
    out = wbxml.encode(msg)
    assert out.startswith(_PREFIX)
    return out[len(_PREFIX) :]


def as_text(value: Any) -> Any:
    """
    C{value} with every C{bytes} (OPAQUE Data) decoded as UTF-8 text.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, tuple):
        return tuple(as_text(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: as_text(getattr(value, f.name)) for f in fields(value)})
    return value


def tools_message() -> SyncML:
    """
    A message using everything but Add/Replace Data, so that libwbxml writes exactly our bytes.
    """
    return SyncML(
        header=samples.header(
            samples.SERVER_URL,
            Location(loc_uri=samples.DEVICE_ID, loc_name="dummy"),
            session_id="1F",
            msg_id="3",
            cred=Cred(
                meta=Meta(format="b64", type="syncml:auth-md5"), data="Zz6EivR3yeaaENcRN6lpAQ=="
            ),
            meta=Meta(max_msg_size=65536, max_obj_size=1048576),
        ),
        body=(
            Status(
                cmd_id="1",
                msg_ref="2",
                cmd_ref="0",
                cmd="SyncHdr",
                target_refs=(samples.DEVICE_ID,),
                source_refs=(samples.SERVER_URL,),
                data="200",
            ),
            Results(
                cmd_id="2",
                msg_ref="2",
                cmd_ref="5",
                items=(
                    Item(
                        source=Location(loc_uri="./DevDetail/SwV"),
                        meta=Meta(format="chr", type="text/plain"),
                        data="10.0.22631.2861 <é>",
                    ),
                ),
            ),
            Alert(
                cmd_id="3",
                data="1226",
                correlator="abc",
                items=(
                    Item(
                        source=Location(loc_uri="./Vendor/MSFT/EnterpriseDesktopAppManagement"),
                        meta=Meta(
                            type="com.microsoft:mdm.win32csp_install",
                            format="int",
                            mark="informational",
                        ),
                        data="0",
                    ),
                ),
            ),
            Atomic(
                cmd_id="4",
                commands=(
                    Delete(
                        cmd_id="5", items=(Item(target=Location(loc_uri="./Vendor/MSFT/Policy/x")),)
                    ),
                    Exec(
                        cmd_id="6",
                        items=(Item(target=Location(loc_uri="./a/b"), data="run &amp;"),),
                    ),
                ),
            ),
            Get(
                cmd_id="7",
                items=(Item(target=Location(loc_uri="./DevDetail/Ext/Microsoft/LocalTime")),),
            ),
        ),
        final=False,
    )


def realistic_messages() -> list[SyncML]:
    return [
        EXAMPLE,
        xml.decode(samples.WINDOWS_PACKAGE1),
        samples.server_message(),
        samples.large_results(total=8 * 1024, items=4),
        tools_message(),
    ]


class ExampleTests(SynchronousTestCase):
    def test_encode_example(self) -> None:
        """
        Our encoder writes the 144 bytes of the reference example exactly.
        """
        self.assertEqual(len(EXAMPLE_BYTES), 144)
        self.assertEqual(wbxml.encode(EXAMPLE), EXAMPLE_BYTES)

    def test_decode_example(self) -> None:
        """
        The example decodes to its model.
        """
        self.assertEqual(wbxml.decode(EXAMPLE_BYTES), EXAMPLE)

    def test_realistic_round_trip(self) -> None:
        """
        The realistic messages survive encode and decode, and are smaller than their XML.
        """
        for msg in realistic_messages():
            out = wbxml.encode(msg)
            self.assertEqual(wbxml.decode(out), msg)
            self.assertLess(len(out), len(xml.encode(msg)))


class DecodeFeatureTests(SynchronousTestCase):
    def test_versions_and_public_ids(self) -> None:
        """
        WBXML 1.1/1.2/1.3 headers and SyncML 1.1/1.2 public ids (numeric or textual) are accepted.
        """
        body = _body(EXAMPLE)
        fpi12 = b"-//SYNCML//DTD SyncML 1.2//EN\x00"
        fpi11 = b"-//SYNCML//DTD SyncML 1.1//EN\x00"
        for data in (
            _document(body, b"\x01\xa4\x01\x6a"),
            _document(body, b"\x03\xa4\x01\x6a"),
            _document(body, b"\x02\x9f\x53\x6a"),
            _document(body, b"\x02\x00\x00\x6a", fpi12),
            _document(body, b"\x02\x00\x05\x6a", b"pad!\x00" + fpi11),
        ):
            self.assertEqual(wbxml.decode(data), EXAMPLE)

    def test_string_table_entity_opaque_text(self) -> None:
        """
        STR_T references, ENTITY and inline pieces concatenate; OPAQUE Data is bytes.
        """
        strtbl = b"./Dev\x00"
        body = (
            b"\x6d"
            + _body(EXAMPLE)[1:].split(b"\x6b", 1)[0]  # the header as we encode it
            # <SyncBody><Get><CmdID>2</CmdID><Item><Target><LocURI>
            + b"\x6b\x53\x4b\x03\x32\x00\x01\x54\x6e\x57"
            # STR_T 0, STR_I, ENTITY 'w', STR_I, </LocURI></Target>
            + b"\x83\x00\x03Detail/S\x00\x02\x77\x03V\x00\x01\x01"
            + b"\x4f\xc3\x03\x00\xff\x01\x01\x01\x01\x12\x01\x01"
        )
        msg = wbxml.decode(_document(body, strtbl=strtbl))
        self.assertEqual(
            msg.body,
            (
                Get(
                    cmd_id="2",
                    items=(Item(target=Location(loc_uri="./DevDetail/SwV"), data=b"\x00\xff\x01"),),
                ),
            ),
        )

    def test_whitespace_between_elements(self) -> None:
        """
        Whitespace-only strings between elements (libwbxml's -k) are ignored.
        """
        spaced = _body(EXAMPLE).replace(b"\x6b\x69", b"\x6b\x03\n  \x00\x69")
        self.assertEqual(wbxml.decode(_PREFIX + spaced), EXAMPLE)

    def test_unknown_commands_and_missing_cmd_id(self) -> None:
        """
        A known token that is no DM command (Sync), a LITERAL element and a
        command without CmdID are represented for the engine to answer 400.
        """
        header = _body(EXAMPLE).split(b"\x6b", 1)[0]
        body = (
            header
            + b"\x6b"
            + b"\x6a\x4b\x03\x37\x00\x01\x01"  # <Sync><CmdID>7</CmdID></Sync>
            + b"\x44\x00\x4b\x03\x38\x00\x01\x01"  # <Thing><CmdID>8</CmdID></Thing> (literal)
            + b"\x53\x54\x6e\x57\x03./a\x00\x01\x01\x01\x01"  # <Get> without CmdID
            + b"\x12\x01\x01"
        )
        msg = wbxml.decode(_document(body, strtbl=b"Thing\x00"))
        self.assertEqual(
            msg.body,
            (
                UnknownElement(name="Sync", cmd_id="7"),
                UnknownElement(name="Thing", cmd_id="8"),
                Get(items=(Item(target=Location(loc_uri="./a")),)),
            ),
        )

    def test_embedded_document_in_data(self) -> None:
        """
        Elements inside Data (literal tags of an embedded document) become XML text.
        """
        header = _body(EXAMPLE).split(b"\x6b", 1)[0]
        body = (
            header
            + b"\x6b\x60\x4b\x03\x32\x00\x01\x54\x4f"
            + b"\x03a&\x00\x44\x00\x03x<y\x00\x04\x04\x01\x03t\x00"  # a&<doc>x&lt;y<c/></doc>t
            + b"\x01\x01\x01\x12\x01\x01"
        )
        msg = wbxml.decode(_document(body, strtbl=b"doc\x00c\x00"))
        self.assertEqual(
            msg.body[0], Replace(cmd_id="2", items=(Item(data="a&amp;<doc>x&lt;y<c/></doc>t"),))
        )

    def test_syncml_11_header(self) -> None:
        """
        A VerDTD 1.1 header is written with the SyncML 1.1 public id.
        """
        msg = replace(EXAMPLE, header=replace(EXAMPLE.header, ver_dtd="1.1"))
        out = wbxml.encode(msg)
        self.assertTrue(out.startswith(b"\x02\x9f\x53\x6a\x00"))
        self.assertEqual(wbxml.decode(out), msg)

    def test_not_encodable(self) -> None:
        """
        Text with NUL, lone surrogates and unknown commands raise L{SyncMLEncodeError}.
        """
        for command in (
            Replace(items=(Item(data="a\x00b"),)),
            Replace(items=(Item(data="\udfff"),)),
            UnknownElement(name="Sync"),
        ):
            with self.assertRaises(SyncMLEncodeError):
                wbxml.encode(SyncML(header=EXAMPLE.header, body=(command,)))


class DecodeErrorTests(SynchronousTestCase):
    def assertWBXMLError(self, data: bytes, fragment: str) -> None:
        assert_refused(self, wbxml.decode, data, fragment, WBXMLDecodeError)

    def test_header_errors(self) -> None:
        """
        Bad versions, public ids, charsets and header integers are named.
        """
        body = _body(EXAMPLE)
        self.assertWBXMLError(b"", "empty document")
        self.assertWBXMLError(_document(body, b"\x00\xa4\x01\x6a"), "version byte 0x00")
        self.assertWBXMLError(_document(body, b"\x04\xa4\x01\x6a"), "version byte 0x04")
        self.assertWBXMLError(_document(body, b"\x02\x01\x6a"), "public identifier 0x0001")
        self.assertWBXMLError(_document(body, b"\x02\xa4\x02\x6a"), "public identifier 0x1202")
        self.assertWBXMLError(
            _document(body, b"\x02\x00\x00\x6a", b"-//SYNCML//DTD DevInf 1.2//EN\x00"),
            "is not SyncML 1.1 or 1.2",
        )
        self.assertWBXMLError(_document(body, b"\x02\x00\x09\x6a", b"x\x00"), "outside the table")
        self.assertWBXMLError(_document(body, b"\x02\xa4\x01\x04"), "charset MIBenum 4")
        self.assertWBXMLError(b"\x02\xa4\x81\x81\x81\x81\x01\x6a\x00", "longer than 5 bytes")
        self.assertWBXMLError(b"\x02\xa4\x01\x9f\xff\xff\xff\x7f\x00", "exceeds 32 bits")
        self.assertWBXMLError(b"\x02\xa4", "truncated in an mb_u_int32")
        self.assertWBXMLError(b"\x02\xa4\x01\x6a\x05ab", "truncated in its string table")

    def test_every_truncation(self) -> None:
        """
        Every proper prefix of a valid document raises L{WBXMLDecodeError}.
        """
        for end in range(len(EXAMPLE_BYTES)):
            self.assertRaises(WBXMLDecodeError, wbxml.decode, EXAMPLE_BYTES[:end])

    def test_body_errors(self) -> None:
        """
        Each malformed token in the body is refused with a message naming it.
        """
        header = _body(EXAMPLE).split(b"\x6b", 1)[0]

        def doc(rest: bytes, strtbl: bytes = b"") -> bytes:
            return _document(header + rest, strtbl=strtbl)

        self.assertWBXMLError(EXAMPLE_BYTES + b"\x00", "1 bytes after the end")
        self.assertWBXMLError(doc(b"\x6b\x70\x01\x01\x01"), "unknown token 0x70 on code page 0")
        self.assertWBXMLError(
            doc(b"\x6b\x53\x00\x01\x7f\x01\x01\x01\x01"), "unknown token 0x7f on code page 1"
        )
        self.assertWBXMLError(
            doc(b"\x6b\x53\x4b\x03\x32\x00\x01\x30\x01\x01\x01"), "unknown token 0x30"
        )
        self.assertWBXMLError(doc(b"\x6b\x00\x02\x53\x01\x01\x01"), "code page 2")
        self.assertWBXMLError(doc(b"\x6b\xd3\x01\x01\x01\x01"), "has attributes")
        self.assertWBXMLError(doc(b"\x6b\xc4\x00\x01\x01\x01\x01", b"x\x00"), "has attributes")
        self.assertWBXMLError(doc(b"\x6b\x43\x01\x01\x01"), "unknown token 0x43")  # PI
        self.assertWBXMLError(doc(b"\x6b\x40\x03x\x00\x01\x01"), "unknown token 0x40")  # EXT_I_0
        self.assertWBXMLError(doc(b"\x6b\xc0\x01\x01"), "unknown token 0xc0")  # EXT_0
        self.assertWBXMLError(doc(b"\x6b\x44\x00\x01\x01\x01", b"a b\x00"), "not an XML name")
        self.assertWBXMLError(doc(b"\x6b\x44\x07\x01\x01\x01", b"ab\x00"), "outside the table")
        self.assertWBXMLError(doc(b"\x6b\x83\x09\x01\x01", b"ab\x00"), "outside the table")
        self.assertWBXMLError(doc(b"\x6b\x53\x4b\x03\xff\xfe\x00\x01\x01\x01\x01"), "not UTF-8")
        self.assertWBXMLError(
            doc(b"\x6b\x60\x54\x4f\x03\xff\x00\x03a\x00\x01\x01\x01\x01\x01"), "not UTF-8"
        )
        self.assertWBXMLError(
            doc(b"\x6b\x60\x4b\x02\x84\xe0\x80\x00\x01\x01\x01\x01"), "not a Unicode character"
        )
        self.assertWBXMLError(
            doc(b"\x6b\x60\x54\x4f\xc3\x09ab\x01\x01\x01\x01\x01"), "truncated in OPAQUE"
        )
        self.assertWBXMLError(doc(b"\x6b\x60\x4b\x03abc"), "truncated in an inline string")
        self.assertWBXMLError(_document(b"\x01"), "closes no element")
        self.assertWBXMLError(_document(b"\x03x\x00\x6d\x01"), "text before the root element")
        self.assertWBXMLError(doc(b"\x6b" + b"\x64" * 70 + b"\x01" * 72), "nest deeper than 64")
        self.assertWBXMLError(
            doc(b"\x6b\x60\x54\x4f" + b"\x44\x00" * 70 + b"\x01" * 74, b"x\x00"),
            "nest deeper than 64",
        )

    def test_structure_errors_are_syncml_errors(self) -> None:
        """
        A well-formed WBXML document that is no SyncML message raises L{SyncMLDecodeError}.
        """
        self.assertTrue(issubclass(WBXMLDecodeError, SyncMLDecodeError))
        with self.assertRaises(SyncMLDecodeError) as caught:
            wbxml.decode(_document(b"\x6d\x6b\x12\x01\x01"))
        self.assertIn("no <SyncHdr>", str(caught.exception))
        with self.assertRaises(SyncMLDecodeError):
            wbxml.decode(_document(b"\x2d"))

    @given(st.binary(max_size=300))
    def test_fuzz_random(self, data: bytes) -> None:
        """
        Arbitrary bytes give a message or a L{SyncMLDecodeError}, nothing else.
        """
        assert_decodes_or_refuses(self, wbxml.decode, data)

    @given(st.integers(min_value=0, max_value=143), st.integers(min_value=0, max_value=255))
    def test_fuzz_mutation(self, index: int, value: int) -> None:
        """
        A valid document with one byte changed gives a message or a L{SyncMLDecodeError}.
        """
        data = bytearray(EXAMPLE_BYTES)
        data[index] = value
        assert_decodes_or_refuses(self, wbxml.decode, bytes(data))


class PropertyTests(SynchronousTestCase):
    @given(messages(binary=True))
    def test_round_trip(self, msg: SyncML) -> None:
        """
        Any message, opaque Data included, decodes back to itself.
        """
        self.assertEqual(wbxml.decode(wbxml.encode(msg)), msg)

    @given(messages())
    def test_same_model_as_xml(self, msg: SyncML) -> None:
        """
        A text-only message reads the same through XML and through WBXML.
        """
        self.assertEqual(wbxml.decode(wbxml.encode(msg)), xml.decode(xml.encode(msg)))


XML2WBXML = shutil.which("xml2wbxml")
WBXML2XML = shutil.which("wbxml2xml")


class LibwbxmlTests(SynchronousTestCase):
    """
    Our codec against libwbxml's command-line tools.
    """

    if not (XML2WBXML and WBXML2XML):
        skip = "libwbxml2-utils (xml2wbxml, wbxml2xml) is not installed"

    def _tool(self, tool: str, flags: list[str], data: bytes) -> bytes:
        directory = self.mktemp()
        os.makedirs(directory)
        source = os.path.join(directory, "in")
        target = os.path.join(directory, "out")
        with open(source, "wb") as f:
            f.write(data)
        done = subprocess.run(
            [tool, *flags, "-o", target, source], capture_output=True, timeout=30, check=False
        )
        self.assertEqual(done.returncode, 0, done.stderr + done.stdout)
        with open(target, "rb") as f:
            return f.read()

    def xml2wbxml(self, data: bytes, *flags: str) -> bytes:
        return self._tool(XML2WBXML, list(flags), data)  # type: ignore[arg-type]

    def wbxml2xml(self, data: bytes) -> bytes:
        return self._tool(WBXML2XML, ["-k", "-m", "0"], data)  # type: ignore[arg-type]

    def test_libwbxml_reads_ours(self) -> None:
        """
        wbxml2xml turns our encoding of realistic messages into the same document.
        """
        for msg in realistic_messages():
            document = self.wbxml2xml(wbxml.encode(msg))
            self.assertTrue(document.startswith(b'<?xml version="1.0"?><!DOCTYPE SyncML PUBLIC'))
            self.assertEqual(xml.decode(document), msg)

    def test_we_read_libwbxml(self) -> None:
        """
        xml2wbxml's encoding of realistic messages decodes to the same model
        (OPAQUE Data read as text), with or without a string table, as WBXML 1.1, 1.2 or 1.3.
        """
        for msg in realistic_messages():
            source = xml.encode(msg)
            for flags in (
                ["-v", "1.2", "-k", "-n"],
                ["-v", "1.2", "-k"],
                ["-v", "1.1", "-k"],
                ["-v", "1.3", "-k", "-n"],
            ):
                self.assertEqual(as_text(wbxml.decode(self.xml2wbxml(source, *flags))), msg, flags)

    def test_same_bytes_as_libwbxml(self) -> None:
        """
        Without Add/Replace Data (which libwbxml makes OPAQUE), libwbxml writes exactly our bytes.
        """
        for msg in (EXAMPLE, tools_message()):
            self.assertEqual(
                self.xml2wbxml(xml.encode(msg), "-v", "1.2", "-k", "-n"), wbxml.encode(msg)
            )

    def test_libwbxml_opaque_replace_data(self) -> None:
        """
        libwbxml puts Replace Data in OPAQUE: we decode bytes carrying the same text.
        """
        msg = xml.decode(samples.WINDOWS_PACKAGE1)
        theirs = wbxml.decode(self.xml2wbxml(xml.encode(msg), "-v", "1.2", "-k", "-n"))
        replace_items = theirs.body[3].items  # type: ignore[attr-defined]
        self.assertEqual(replace_items[1].data, b"Contoso Ltd.")
        self.assertEqual(theirs.body[2].items[0].data, "user")  # type: ignore[attr-defined]

    def test_libwbxml_trims_without_k(self) -> None:
        """
        Without -k libwbxml trims text: the flag matters for exact Data.
        """
        msg = replace(
            EXAMPLE,
            body=(
                Exec(cmd_id="2", items=(Item(target=Location(loc_uri="./a"), data="  padded "),)),
            ),
        )
        trimmed = wbxml.decode(self.xml2wbxml(xml.encode(msg), "-v", "1.2", "-n"))
        self.assertEqual(trimmed.body[0].items[0].data, "padded")  # type: ignore[attr-defined]
        kept = wbxml.decode(self.xml2wbxml(xml.encode(msg), "-v", "1.2", "-k", "-n"))
        self.assertEqual(kept, msg)

    def test_add_data_round_trip_through_libwbxml(self) -> None:
        """
        Escaped markup in Add Data survives ours → wbxml2xml and xml2wbxml → ours.
        """
        msg = replace(
            EXAMPLE,
            body=(
                Add(
                    cmd_id="2",
                    items=(Item(target=Location(loc_uri="./p"), data="<a x='1'>&amp;</a>"),),
                ),
            ),
        )
        self.assertEqual(xml.decode(self.wbxml2xml(wbxml.encode(msg))), msg)
        self.assertEqual(
            as_text(wbxml.decode(self.xml2wbxml(xml.encode(msg), "-v", "1.2", "-k", "-n"))), msg
        )
