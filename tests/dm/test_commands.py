"""
Tests for L{mdmd.dm.commands}: what operators may queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm.commands import PENDING, CommandSpec, InvalidCommand, normalize_uri, parse_spec, scope_of, sendable


class URITests(SynchronousTestCase):
    def test_encoding(self) -> None:
        """
        Non-unreserved characters are UTF-8 percent-encoded; existing escapes and queries are kept.
        """
        self.assertEqual(
            normalize_uri("./Vendor/MSFT/DMClient/Provider/MS DM Server/EntDMID"),
            "./Vendor/MSFT/DMClient/Provider/MS%20DM%20Server/EntDMID",
        )
        self.assertEqual(normalize_uri("./Vendor/Caf\u00e9"), "./Vendor/Caf%C3%A9")
        self.assertEqual(normalize_uri("./Vendor/MS%20DM%20Server"), "./Vendor/MS%20DM%20Server")
        self.assertEqual(normalize_uri("./Vendor/a%2fb"), "./Vendor/a%2Fb")
        self.assertEqual(normalize_uri("./DevDetail?list=Struct"), "./DevDetail?list=Struct")

    def test_rules(self) -> None:
        """
        Each DM LocURI rule is enforced with a message naming it.
        """
        for uri, reason in (
            ("/Vendor/MSFT", "must not start with '/'"),
            ("./Vendor/", "must not end with '/'"),
            ("./Vendor//X", "must not be empty or '*'"),
            ("./Vendor/*", "must not be empty or '*'"),
            ("./Vendor/../X", "'.' and '..'"),
            ("./Vendor?foo=1", "only ?list= and ?prop="),
            ("", "non-empty"),
            ("./" + "a" * 2000, "at most"),
        ):
            with self.assertRaises(InvalidCommand) as caught:
                normalize_uri(uri)
            self.assertIn(reason, str(caught.exception))

    @given(st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s and s not in (".", "..", "*")))
    def test_any_name_encodes_to_ascii(self, name: str) -> None:
        """
        Any node name becomes a pure-ASCII URI that normalizes to itself.
        """
        uri = normalize_uri(f"./Vendor/{name}".split("?")[0]) if "?" not in name else None
        if uri is None:
            return
        uri.encode("ascii")
        self.assertEqual(normalize_uri(uri), uri)

    def test_scope(self) -> None:
        """
        ./User targets are user-scoped whatever their case; everything else is device-scoped.
        """
        self.assertEqual(scope_of("./User/Vendor/X"), "user")
        self.assertEqual(scope_of("./user/Vendor/X"), "user")
        self.assertEqual(scope_of("./Device/Vendor/X"), "device")
        self.assertEqual(scope_of("./Vendor/X"), "device")
        self.assertEqual(scope_of("./Users/X"), "device")


class SpecTests(SynchronousTestCase):
    def test_item_command(self) -> None:
        """
        A single-target command, verb case-insensitive, keeps format and type.
        """
        spec = parse_spec({"verb": "replace", "target": "./Vendor/X", "data": "1", "format": "int", "type": "text/plain"})
        self.assertEqual(spec.as_json(), {"verb": "Replace", "items": [{"target": "./Vendor/X", "data": "1", "format": "int", "type": "text/plain"}]})
        self.assertEqual(CommandSpec.from_json(spec.as_json()), spec)

    def test_groups(self) -> None:
        """
        Atomic and Sequence hold commands; their JSON round-trips.
        """
        spec = parse_spec(
            {
                "verb": "Sequence",
                "commands": [
                    {"verb": "Get", "target": "./A"},
                    {"verb": "Atomic", "commands": [{"verb": "Delete", "target": "./B"}, {"verb": "Exec", "target": "./C"}]},
                ],
            }
        )
        self.assertEqual([c.verb for c in spec.walk()], ["Sequence", "Get", "Atomic", "Delete", "Exec"])
        self.assertEqual(CommandSpec.from_json(spec.as_json()), spec)

    def test_windows_rules(self) -> None:
        """
        Microsoft's rules for Atomic, and the shape rules, are refused with the reason.
        """
        cases = [
            ({"verb": "Atomic", "commands": [{"verb": "Atomic", "commands": [{"verb": "Add", "target": "./a"}]}]}, "cannot be nested"),
            ({"verb": "Atomic", "commands": [{"verb": "Get", "target": "./a"}]}, "Get is not allowed inside Atomic"),
            ({"verb": "Atomic", "commands": [{"verb": "Add", "target": "./a"}, {"verb": "Replace", "target": "./a"}]}, "Add followed by Replace"),
            ({"verb": "Atomic", "commands": [{"verb": "Add", "target": "./User/a"}, {"verb": "Add", "target": "./Device/b"}]}, "do not mix"),
            ({"verb": "Atomic", "commands": []}, "non-empty 'commands'"),
            ({"verb": "Get", "target": "./a", "data": "x"}, "carries no data"),
            ({"verb": "Exec", "items": [{"target": "./a"}, {"target": "./b"}]}, "exactly one item"),
            ({"verb": "Copy", "target": "./a"}, "source URI is required"),
            ({"verb": "Replace", "target": "./a", "format": "weird"}, "unknown format"),
            ({"verb": "Frob", "target": "./a"}, "unknown verb"),
            ({"verb": "Get"}, "needs a 'target'"),
            ({"verb": "Get", "target": "./a", "extra": 1}, "unknown field"),
            ("Get ./a", "must be an object"),
        ]
        for raw, reason in cases:
            with self.assertRaises(InvalidCommand) as caught:
                parse_spec(raw)
            self.assertIn(reason, str(caught.exception))

    def test_scope_of_group(self) -> None:
        """
        A command is user-scoped if any of its targets is.
        """
        self.assertEqual(parse_spec({"verb": "Get", "target": "./User/X"}).scope, "user")
        self.assertEqual(parse_spec({"verb": "Sequence", "commands": [{"verb": "Get", "target": "./X"}, {"verb": "Get", "target": "./User/Y"}]}).scope, "user")


class TreeRuleTests(SynchronousTestCase):
    def test_atomic_rules_hold_through_a_sequence(self) -> None:
        """
        Nothing under an Atomic, however deep, may be an Atomic or a Get (issue 12:
        only the direct parent was checked).
        """
        add = {"verb": "Add", "target": "./a"}
        cases = [
            ({"verb": "Atomic", "commands": [{"verb": "Sequence", "commands": [{"verb": "Atomic", "commands": [add]}]}]}, "Atomic commands cannot be nested (not even through a Sequence)"),
            ({"verb": "Atomic", "commands": [{"verb": "Sequence", "commands": [{"verb": "Get", "target": "./a"}]}]}, "Get is not allowed inside Atomic (not even through a Sequence)"),
            ({"verb": "Sequence", "commands": [{"verb": "Atomic", "commands": [{"verb": "Sequence", "commands": [add, {"verb": "Get", "target": "./b"}]}]}]}, "Get is not allowed inside Atomic (not even through a Sequence)"),
        ]
        for raw, reason in cases:
            with self.assertRaises(InvalidCommand) as caught:
                parse_spec(raw)
            self.assertEqual(str(caught.exception), reason)
        # a Get in a Sequence that holds an Atomic is fine
        fine = parse_spec({"verb": "Sequence", "commands": [{"verb": "Get", "target": "./a"}, {"verb": "Atomic", "commands": [add]}]})
        self.assertEqual([c.verb for c in fine.walk()], ["Sequence", "Get", "Atomic", "Add"])

    def test_correlator(self) -> None:
        """
        An Exec may carry a correlator (kept in its JSON); no other verb may.
        """
        spec = parse_spec({"verb": "Exec", "target": "./Vendor/X/Run", "correlator": "job-1"})
        self.assertEqual(spec.as_json()["correlator"], "job-1")
        self.assertEqual(CommandSpec.from_json(spec.as_json()), spec)
        for raw, reason in (
            ({"verb": "Get", "target": "./a", "correlator": "x"}, "only Exec takes a correlator"),
            ({"verb": "Exec", "target": "./a", "correlator": ""}, "1 to 256 characters"),
            ({"verb": "Exec", "target": "./a", "correlator": "a\x00b"}, "U+0000"),
        ):
            with self.assertRaises(InvalidCommand) as caught:
                parse_spec(raw)
            self.assertIn(reason, str(caught.exception))

    def test_text_syncml_cannot_carry(self) -> None:
        """
        Data or a type holding a character no SyncML encoding carries is refused at queue
        time (it would fail every session of the device).
        """
        for raw in (
            {"verb": "Replace", "target": "./a", "data": "x\x00y"},
            {"verb": "Replace", "target": "./a", "data": "\ud800"},
            {"verb": "Replace", "target": "./a", "data": "1", "type": "text/\x01"},
        ):
            with self.assertRaises(InvalidCommand) as caught:
                parse_spec(raw)
            self.assertIn("which SyncML cannot carry", str(caught.exception))
        self.assertEqual(parse_spec({"verb": "Replace", "target": "./a", "data": "tab\tand\nlines\r"}).items[0].data, "tab\tand\nlines\r")


class AcceptedSendableTests(SynchronousTestCase):
    def test_accepted_holds_nothing_back(self) -> None:
        """
        An accepted (202) command is neither sent again nor holds back its scope.
        """
        queue = [Q(1, "accepted", "device"), Q(2, "queued", "device")]
        self.assertEqual([c.seq for c in sendable(queue, user_logged_in=True)], [2])
        self.assertIn("accepted", PENDING)


@dataclass
class Q:
    seq: int
    state: str
    scope: str


class SendableTests(SynchronousTestCase):
    def test_order_is_strict_per_scope(self) -> None:
        """
        A command waiting for its answer holds back the later ones of its scope only.
        """
        queue = [Q(1, "sent", "device"), Q(2, "queued", "device"), Q(3, "queued", "user"), Q(4, "done", "device")]
        self.assertEqual([c.seq for c in sendable(queue, user_logged_in=True)], [3])
        self.assertEqual([c.seq for c in sendable(queue, user_logged_in=False)], [])

    def test_user_commands_wait_for_login(self) -> None:
        """
        User commands wait for the login; device commands go.
        """
        queue = [Q(1, "queued", "user"), Q(2, "queued", "device"), Q(3, "queued", "user")]
        self.assertEqual([c.seq for c in sendable(queue, user_logged_in=False)], [2])
        self.assertEqual([c.seq for c in sendable(queue, user_logged_in=True)], [1, 2, 3])
