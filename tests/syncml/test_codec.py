"""
Tests for L{mdmd.syncml.codec}: codec choice, message sizing, large-object chunking.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.errors import PeerError
from mdmd.syncml.codec import (
    CONTENT_TYPES,
    DS_WBXML_CODEC,
    DS_XML_CODEC,
    WBXML_CODEC,
    XML_CODEC,
    ChunkError,
    Codec,
    codec_for_content_type,
    data_size,
    next_chunk,
    reassemble,
    split_command,
)
from mdmd.syncml.codes import StatusCode
from mdmd.syncml.model import Add, Get, Item, Location, Meta, Replace, SyncML
from mdmd.testing import syncml as samples
from tests.syncml.strategies import messages, xml_chars

CODECS = (XML_CODEC, WBXML_CODEC)


class ContentTypeTests(SynchronousTestCase):
    def test_known_types(self) -> None:
        """
        Both DM media types map to their codec, with parameters, case and bytes tolerated.
        """
        self.assertIs(codec_for_content_type("application/vnd.syncml.dm+xml"), XML_CODEC)
        self.assertIs(codec_for_content_type("application/vnd.syncml.dm+wbxml"), WBXML_CODEC)
        self.assertIs(
            codec_for_content_type("Application/VND.SyncML.DM+XML; charset=utf-8"), XML_CODEC
        )
        self.assertIs(codec_for_content_type(b"application/vnd.syncml.dm+wbxml ;x=y"), WBXML_CODEC)
        self.assertEqual(XML_CODEC.content_type, "application/vnd.syncml.dm+xml")
        self.assertEqual(WBXML_CODEC.content_type, "application/vnd.syncml.dm+wbxml")

    def test_syncml_ds_types(self) -> None:
        """
        The SyncML DS media types (libdmclient sends them) map to the same encodings,
        under their own type, so the answer goes back in the type the device used.
        """
        for content_type, codec, like in (
            ("application/vnd.syncml+xml", DS_XML_CODEC, XML_CODEC),
            ("Application/VND.SyncML+WBXML; charset=utf-8", DS_WBXML_CODEC, WBXML_CODEC),
        ):
            found = codec_for_content_type(content_type)
            self.assertIs(found, codec)
            assert found is not None
            self.assertEqual(found.content_type, content_type.split(";")[0].lower())
            self.assertEqual((found.encode, found.decode, found.command_size), (like.encode, like.decode, like.command_size))
        self.assertEqual(
            CONTENT_TYPES,
            (
                "application/vnd.syncml.dm+xml",
                "application/vnd.syncml.dm+wbxml",
                "application/vnd.syncml+xml",
                "application/vnd.syncml+wbxml",
            ),
        )

    def test_unknown_types(self) -> None:
        """
        Anything else (answer 415) gives C{None}.
        """
        for value in (
            None,
            "",
            "text/xml",
            "application/vnd.syncml.notification",
            "application/vnd.syncml+xmlx",
            "application/vnd.syncml.dm+xmlx",
        ):
            self.assertIsNone(codec_for_content_type(value))

    def test_codecs_round_trip(self) -> None:
        """
        Each codec decodes what it encodes.
        """
        msg = samples.server_message()
        for codec in CODECS:
            self.assertIsInstance(codec, Codec)
            self.assertEqual(codec.decode(codec.encode(msg)), msg)


class SizeTests(SynchronousTestCase):
    def assertSizes(self, codec: Codec, msg: SyncML) -> None:
        bound = codec.envelope_size(msg.header, msg.final) + sum(
            codec.command_size(c) for c in msg.body
        )
        actual = len(codec.encode(msg))
        self.assertGreaterEqual(bound, actual)
        if msg.final or codec is XML_CODEC:
            self.assertEqual(bound, actual)

    def test_realistic(self) -> None:
        """
        Sizes of the realistic messages add up exactly, for both codecs.
        """
        for codec in CODECS:
            for msg in (samples.server_message(), samples.large_results()):
                self.assertSizes(codec, msg)

    def test_page_switch_counted(self) -> None:
        """
        In WBXML a command ending on the MetInf page counts the switch back,
        so two such commands in a row still add up.
        """
        get = Get(
            cmd_id="2", items=(Item(target=Location(loc_uri="./a"), meta=Meta(format="chr")),)
        )
        msg = SyncML(header=samples.server_header(), body=(get, get), final=True)
        self.assertSizes(WBXML_CODEC, msg)
        self.assertSizes(WBXML_CODEC, replace(msg, final=False))

    @given(messages(binary=False))
    def test_sum_bounds_xml(self, msg: SyncML) -> None:
        """
        XML: envelope plus commands is exactly the encoded length.
        """
        self.assertSizes(XML_CODEC, msg)

    @given(messages(binary=True))
    def test_sum_bounds_wbxml(self, msg: SyncML) -> None:
        """
        WBXML: envelope plus commands bounds the encoded length, exactly with Final.
        """
        self.assertSizes(WBXML_CODEC, msg)


def _replace(data: str | bytes, meta: Meta | None = None) -> Replace:
    return Replace(
        cmd_id="9",
        items=(Item(target=Location(loc_uri="./Vendor/MSFT/Blob"), meta=meta, data=data),),
    )


class ChunkTests(SynchronousTestCase):
    def assertChunks(self, codec: Codec, command: Replace, budget: int) -> list:
        chunks = split_command(codec, command, budget)
        items = [c.items[0] for c in chunks]
        self.assertGreater(len(chunks), 1)
        for chunk in chunks:
            self.assertLessEqual(codec.command_size(chunk), budget)
            self.assertEqual(chunk.cmd_id, command.cmd_id)
            self.assertEqual(chunk.items[0].target, command.items[0].target)
        self.assertEqual([i.more_data for i in items], [True] * (len(items) - 1) + [False])
        assert items[0].meta is not None and command.items[0].data is not None
        self.assertEqual(items[0].meta.size, data_size(command.items[0].data))
        self.assertTrue(all(i.meta is None or i.meta.size is None for i in items[1:]))
        whole = reassemble(items)
        self.assertEqual(whole.data, command.items[0].data)
        self.assertFalse(whole.more_data)
        return chunks

    def test_text_both_codecs(self) -> None:
        """
        Escape-heavy, multi-byte text splits into chunks within the budget and joins back.
        """
        text = ("<é&ü>\u4e2d" * 300) + "tail"
        for codec in CODECS:
            chunks = self.assertChunks(codec, _replace(text, Meta(format="chr")), 400)
            self.assertEqual(chunks[1].items[0].meta, Meta(format="chr"))

    def test_bytes_wbxml(self) -> None:
        """
        Opaque bytes split at any byte; the sizes count OPAQUE length prefixes.
        """
        self.assertChunks(WBXML_CODEC, _replace(bytes(range(256)) * 20), 300)

    def test_first_budget(self) -> None:
        """
        The first chunk may get a smaller budget (the rest of the current message).
        """
        command = _replace("x" * 2000)
        chunks = split_command(XML_CODEC, command, 600, first_budget=250)
        self.assertLessEqual(XML_CODEC.command_size(chunks[0]), 250)
        self.assertTrue(all(XML_CODEC.command_size(c) <= 600 for c in chunks[1:]))
        self.assertEqual(reassemble([c.items[0] for c in chunks]).data, "x" * 2000)
        # A first budget too small for any data starts in the next message instead.
        later = split_command(XML_CODEC, command, 600, first_budget=10)
        self.assertEqual(reassemble([c.items[0] for c in later]).data, "x" * 2000)

    def test_fits_whole(self) -> None:
        """
        A command that fits comes back unchanged (no MoreData, no Size).
        """
        command = _replace("small")
        self.assertEqual(next_chunk(XML_CODEC, command, 0, 10_000), (command, 5))
        self.assertEqual(split_command(WBXML_CODEC, command, 10_000), [command])

    def test_nothing_fits(self) -> None:
        """
        A budget below the command's overhead gives C{None} / C{ValueError}.
        """
        command = _replace("x" * 100)
        self.assertIsNone(next_chunk(XML_CODEC, command, 0, 50))
        self.assertRaises(ValueError, split_command, XML_CODEC, command, 50)

    def test_only_single_item(self) -> None:
        """
        Chunking needs exactly one Item with Data.
        """
        two = Add(cmd_id="1", items=(Item(data="a"), Item(data="b")))
        self.assertRaises(ValueError, next_chunk, XML_CODEC, two, 0, 100)
        self.assertRaises(
            ValueError, next_chunk, XML_CODEC, Get(cmd_id="1", items=(Item(),)), 0, 100
        )

    @given(
        st.text(xml_chars, max_size=300) | st.binary(max_size=300),
        st.integers(min_value=200, max_value=400),
    )
    def test_chunk_property(self, data: str | bytes, budget: int) -> None:
        """
        Any data splits within the budget and reassembles to itself (WBXML).
        """
        chunks = split_command(WBXML_CODEC, _replace(data), budget)
        self.assertTrue(all(WBXML_CODEC.command_size(c) <= budget for c in chunks))
        items = [c.items[0] for c in chunks]
        if len(chunks) > 1:
            self.assertEqual(reassemble(items).data, data)


class ReassembleTests(SynchronousTestCase):
    def test_size_mismatch(self) -> None:
        """
        Chunks that do not add up to the announced Size raise a 424 L{ChunkError}.
        """
        chunks = [Item(meta=Meta(size=10), data="abc", more_data=True), Item(data="def")]
        with self.assertRaises(ChunkError) as caught:
            reassemble(chunks)
        self.assertEqual(caught.exception.status, StatusCode.SIZE_MISMATCH)
        self.assertIsInstance(caught.exception, PeerError)

    def test_size_required(self) -> None:
        """
        A first chunk without Size gives 411.
        """
        with self.assertRaises(ChunkError) as caught:
            reassemble([Item(data="abc", more_data=True), Item(data="d")])
        self.assertEqual(caught.exception.status, StatusCode.SIZE_REQUIRED)

    def test_incomplete(self) -> None:
        """
        MoreData on the last chunk, or missing on an earlier one, gives 412.
        """
        for chunks in (
            [Item(meta=Meta(size=3), data="abc", more_data=True)],
            [Item(meta=Meta(size=6), data="abc"), Item(data="def")],
        ):
            with self.assertRaises(ChunkError) as caught:
                reassemble(chunks)
            self.assertEqual(caught.exception.status, StatusCode.INCOMPLETE_COMMAND)

    def test_mixed_text_and_opaque(self) -> None:
        """
        Chunks mixing text and OPAQUE bytes join as bytes; Size counts UTF-8 bytes.
        """
        whole = reassemble(
            [Item(meta=Meta(size=5, format="chr"), data="é", more_data=True), Item(data=b"abc")]
        )
        self.assertEqual(whole.data, "é".encode() + b"abc")
        self.assertEqual(whole.meta, Meta(size=5, format="chr"))

    def test_empty(self) -> None:
        """
        No chunks at all is a programming error.
        """
        self.assertRaises(ValueError, reassemble, [])
