"""
Tests for L{mdmd.dm.chunking} and how the engine fills messages: MaxMsgSize, MaxObjSize, MoreData both ways.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.syncml.codec import WBXML_CODEC, XML_CODEC
from mdmd.syncml.model import Alert, Meta

from .helpers import GET_SWV, REPLACE, Harness, commands, statuses


class SizeTests(SynchronousTestCase):
    @given(st.integers(min_value=1400, max_value=6000), st.sampled_from([XML_CODEC, WBXML_CODEC]))
    def test_messages_respect_max_msg_size(self, limit, codec) -> None:
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
        sent_order = []
        for _ in range(60):
            self.assertLessEqual(len(h.outcomes[-1].body), limit)
            sent_order += [c.items[0].target.loc_uri for c in commands(reply)]
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
        pieces = []
        for _ in range(20):
            self.assertLessEqual(len(h.outcomes[-1].body), 1500)
            (chunk,) = commands(reply)
            item = chunk.items[0]
            if not pieces:
                self.assertEqual(item.meta.size, 5000)
            pieces.append(item.data)
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
        self.assertEqual([c.items[0].target.loc_uri for c in commands(reply)], [REPLACE["target"]])
