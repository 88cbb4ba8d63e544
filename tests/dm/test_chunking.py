"""
Tests for L{mdmd.dm.chunking} and how the engine fills messages: MaxMsgSize, MaxObjSize, MoreData both ways.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm.chunking import IncomingObject, Piece, Received, chunkable, next_piece, receive, too_big
from mdmd.dm.commands import parse_spec
from mdmd.syncml.codec import WBXML_CODEC, XML_CODEC, Codec
from mdmd.syncml.model import Alert, Item, Location, Meta, Replace, Results

from ..narrowing import narrowed
from .helpers import GET_SWV, REPLACE, Harness, commands, first_item, statuses, target_uri


class SizeTests(SynchronousTestCase):
    @given(st.integers(min_value=1400, max_value=6000), st.sampled_from([XML_CODEC, WBXML_CODEC]))
    def test_messages_respect_max_msg_size(self, limit: int, codec: Codec) -> None:
        """
        However small MaxMsgSize is, no message is larger, nothing is lost, order is kept.
        """
        specs = [
            {"verb": "Replace", "target": f"./Vendor/MSFT/Policy/Config/Area/Setting{i}", "data": "x" * (i * 37 % 300), "format": "chr"}
            for i in range(25)
        ]
        h = Harness(*specs, codec=codec)
        h.client.max_msg_size = limit
        reply = h.send(h.client.package1())
        sent_order: list[str] = []
        for _ in range(60):
            self.assertLessEqual(len(h.outcomes[-1].body), limit)
            sent_order += [target_uri(c) for c in commands(reply)]
            if reply.final and not commands(reply):
                break
            reply = h.send(h.answer_all(reply))
        self.assertEqual(sent_order, [s["target"] for s in specs])
        self.assertEqual({r["state"] for r in h.records.values()}, {"done"})

    def test_final_withheld_while_package_continues(self) -> None:
        """
        Commands that do not fit wait for the next message, and Final is withheld meanwhile.
        """
        specs = [{"verb": "Replace", "target": f"./Vendor/X/{i}", "data": "y" * 400} for i in range(10)]
        h = Harness(*specs)
        h.client.max_msg_size = 2000
        reply = h.send(h.client.package1())
        self.assertFalse(reply.final)
        self.assertLess(len(commands(reply)), 10)

    def test_large_object_out(self) -> None:
        """
        A value larger than a message goes in chunks: Meta Size on the first, MoreData on all but the last.
        """
        data = "".join(chr(65 + i % 26) for i in range(5000))
        h = Harness({"verb": "Replace", "target": "./Vendor/Big", "data": data, "format": "chr"})
        h.client.max_msg_size = 1500
        reply = h.send(h.client.package1())
        pieces: list[str] = []
        for _ in range(20):
            self.assertLessEqual(len(h.outcomes[-1].body), 1500)
            (chunk,) = commands(reply)
            item = first_item(chunk)
            if not pieces:
                self.assertEqual(narrowed(Meta, item.meta).size, 5000)
            pieces.append(narrowed(str, item.data))
            c = h.client
            c.cmd_ids = __import__("itertools").count(1)
            code = 213 if item.more_data else 200
            self.assertEqual(reply.final, not item.more_data)
            reply = h.send(c.reply(c.header_status(reply), c.status_for(reply, chunk, code)))
            if code == 200:
                break
        self.assertEqual("".join(pieces), data)
        self.assertGreater(len(pieces), 3)
        self.assertEqual(h.records[1]["state"], "done")

    def test_large_object_in(self) -> None:
        """
        Results arriving in chunks are answered 213 (with Alert 1222) and reassembled.
        """
        h = Harness(GET_SWV)
        reply = h.send(h.client.package1())
        (get,) = commands(reply)
        c = h.client
        c.cmd_ids = __import__("itertools").count(1)
        first = h.send(c.reply(c.header_status(reply), c.status_for(reply, get, 200), c.results_for(reply, get, "./DevDetail/SwV", "abc", more=True, size=6), final=False))
        self.assertEqual([s.data for s in statuses(first)], ["200", "213"])
        self.assertIn("1222", [a.data for a in first.body if isinstance(a, Alert)])
        self.assertFalse(first.final)
        c.cmd_ids = __import__("itertools").count(1)
        h.send(c.reply(c.header_status(first), c.results_for(reply, get, "./DevDetail/SwV", "def")))
        self.assertEqual(h.records[1]["results"][0]["data"], "abcdef")

    def test_large_object_size_mismatch(self) -> None:
        """
        Chunks that do not add up to the announced size get 424.
        """
        h = Harness(GET_SWV)
        reply = h.send(h.client.package1())
        (get,) = commands(reply)
        c = h.client
        c.cmd_ids = __import__("itertools").count(1)
        first = h.send(c.reply(c.header_status(reply), c.status_for(reply, get, 200), c.results_for(reply, get, "./DevDetail/SwV", "abc", more=True, size=10), final=False))
        c.cmd_ids = __import__("itertools").count(1)
        last = h.send(c.reply(c.header_status(first), c.results_for(reply, get, "./DevDetail/SwV", "def")))
        self.assertEqual(statuses(last)[-1].data, "424")

    def test_object_too_big_for_device(self) -> None:
        """
        A value above the device's MaxObjSize fails with a reason instead of being sent.
        """
        h = Harness({"verb": "Replace", "target": "./Vendor/Big", "data": "z" * 3000}, REPLACE)
        h.client = replace(h.client)
        message = h.client.package1()
        message = replace(message, header=replace(message.header, meta=Meta(max_obj_size=1000)))
        reply = h.send(message)
        self.assertIn("MaxObjSize", h.records[1]["error"])
        self.assertEqual([target_uri(c) for c in commands(reply)], [REPLACE["target"]])


def _results(data: str, more: bool = False, size: int | None = None, uri: str = "./x", cmd_ref: str = "5") -> Results:
    meta = Meta(size=size) if size is not None else None
    item = Item(source=Location(loc_uri=uri), meta=meta, data=data, more_data=more)
    return Results(cmd_id="2", msg_ref="1", cmd_ref=cmd_ref, items=(item,))


def _receive(incoming: IncomingObject | None, command: Results, limit: int = 100) -> Received:
    return receive(incoming, command, command.msg_ref, command.cmd_ref, limit)


class ReceiveTests(SynchronousTestCase):
    def test_whole_item(self) -> None:
        """
        Items without MoreData are acted on at once.
        """
        command = _results("abc")
        self.assertEqual(_receive(None, command), Received(command.items))

    def test_chunks_then_whole(self) -> None:
        """
        A first chunk is buffered (213), the next continues it, the last gives the whole item.
        """
        first = _receive(None, _results("abc", more=True, size=9))
        self.assertEqual((first.items, first.status), (None, 213))
        self.assertEqual(narrowed(IncomingObject, first.incoming).chunks[0].data, "abc")
        second = _receive(first.incoming, _results("def", more=True))
        self.assertEqual((second.status, len(narrowed(IncomingObject, second.incoming).chunks)), (213, 2))
        last = _receive(second.incoming, _results("ghi"))
        self.assertEqual((last.status, last.incoming, last.cut_off), (None, None, None))
        assert last.items is not None
        self.assertEqual(last.items[0].data, "abcdefghi")

    def test_size_mismatch(self) -> None:
        """
        Chunks that do not add up to the announced Size end with 424 and nothing arriving.
        """
        first = _receive(None, _results("abc", more=True, size=4))
        last = _receive(first.incoming, _results("def"))
        self.assertEqual((last.items, last.status, last.incoming), (None, 424, None))

    def test_cut_off(self) -> None:
        """
        Another command while an object is arriving cuts it off; that command is read as usual.
        """
        first = _receive(None, _results("abc", more=True, size=9))
        other = _receive(first.incoming, _results("zzz", uri="./other"))
        self.assertEqual(other.cut_off, first.incoming)
        assert other.items is not None
        self.assertEqual(other.items[0].data, "zzz")
        restart = _receive(first.incoming, _results("abc", more=True, size=9, cmd_ref="6"))
        self.assertEqual((restart.cut_off, restart.status, narrowed(IncomingObject, restart.incoming).cmd_ref), (first.incoming, 213, "6"))

    def test_too_large(self) -> None:
        """
        An object announced, or grown, beyond our MaxObjSize is refused with 413.
        """
        announced = _receive(None, _results("abc", more=True, size=101))
        self.assertEqual((announced.status, announced.incoming), (413, None))
        first = _receive(None, _results("a" * 60, more=True, size=100), limit=100)
        grown = _receive(first.incoming, _results("b" * 60, more=True), limit=100)
        self.assertEqual((grown.status, grown.incoming), (413, None))

    def test_several_items_in_chunks(self) -> None:
        """
        MoreData in a command with several items is refused (412): only one object at a time.
        """
        command = Replace(
            cmd_id="2",
            items=(Item(data="a", more_data=True), Item(data="b")),
        )
        found = receive(None, command, None, None, 100)
        self.assertEqual((found.items, found.status, found.incoming), (None, 412, None))


class SendTests(SynchronousTestCase):
    def whole(self, data: str) -> Replace:
        return Replace(cmd_id="5", items=(Item(target=Location(loc_uri="./Vendor/Big"), data=data),))

    def test_pieces(self) -> None:
        """
        Each piece fits the budget and says where the next starts; the last says nothing more.
        """
        data = "x" * 1000
        offset = 0
        pieces: list[str] = []
        while True:
            piece = narrowed(Piece, next_piece(XML_CODEC, self.whole(data), 7, offset, 400))
            self.assertLessEqual(XML_CODEC.command_size(piece.command), 400)
            pieces.append(narrowed(str, piece.command.items[0].data))
            if piece.sending is None:
                break
            self.assertEqual(piece.sending.seq, 7)
            offset = piece.sending.offset
        self.assertEqual("".join(pieces), data)
        self.assertGreater(len(pieces), 2)

    def test_no_room(self) -> None:
        """
        A budget that cannot hold a single character gives no piece.
        """
        self.assertIsNone(next_piece(XML_CODEC, self.whole("x" * 1000), 7, 0, 50))

    def test_chunkable(self) -> None:
        """
        Only an Add or Replace of one value goes in chunks.
        """
        self.assertTrue(chunkable(parse_spec({"verb": "Replace", "target": "./a", "data": "x"})))
        self.assertTrue(chunkable(parse_spec({"verb": "Add", "target": "./a", "data": "x"})))
        self.assertFalse(chunkable(parse_spec({"verb": "Exec", "target": "./a", "data": "x"})))
        self.assertFalse(chunkable(parse_spec({"verb": "Delete", "target": "./a"})))

    def test_too_big(self) -> None:
        """
        A value above the device's MaxObjSize, anywhere in a group, is named; no limit, no refusal.
        """
        spec = parse_spec({"verb": "Atomic", "commands": [{"verb": "Replace", "target": "./a", "data": "y" * 20}]})
        self.assertIsNone(too_big(spec, None))
        self.assertIsNone(too_big(spec, 20))
        self.assertIn("MaxObjSize 19", too_big(spec, 19))

