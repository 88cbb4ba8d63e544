"""
Tests for L{mdmd.desired.profiles}: a profile file → steps, a step → what a device gets.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.desired.profiles import InvalidProfile, Step, parse_profile, plan, plan_step, valid_name

CAMERA = b"""<?xml version="1.0" encoding="UTF-8"?>
<Replace>
  <CmdID>1</CmdID>
  <Item>
    <Target><LocURI>./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera</LocURI></Target>
    <Meta><Format xmlns="syncml:metinf">int</Format></Meta>
    <Data>0</Data>
  </Item>
</Replace>
"""


def problems(data: bytes) -> list[str]:
    try:
        parse_profile(data)
    except InvalidProfile as e:
        return e.problems
    raise AssertionError("the profile was accepted")


class ParseTests(SynchronousTestCase):
    def test_policy(self) -> None:
        """
        A Replace fragment (with an XML declaration) is one step in the JSON form of a command.
        """
        (step,) = parse_profile(CAMERA)
        self.assertEqual(
            step.raw,
            {
                "verb": "Replace",
                "items": [{"target": "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera", "data": "0", "format": "int"}],
            },
        )
        self.assertEqual(step.line, 2)
        self.assertEqual(step.variables, frozenset())

    def test_every_verb_and_atomic(self) -> None:
        """
        Add, Exec, Delete and Atomic are steps; a command's Meta applies to its items; CmdIDs are ignored.
        """
        steps = parse_profile(
            b"<Add><Meta><Format>chr</Format></Meta><Item><Target><LocURI>./Vendor/MSFT/A</LocURI></Target><Data>a</Data></Item></Add>"
            b"<Exec><Item><Target><LocURI>./Vendor/MSFT/B</LocURI></Target></Item></Exec>"
            b"<Delete><Item><Target><LocURI>./Vendor/MSFT/C</LocURI></Target></Item></Delete>"
            b"<Atomic><CmdID>9</CmdID><Replace><Item><Target><LocURI>./Vendor/MSFT/D</LocURI></Target><Data>d</Data></Item></Replace></Atomic>"
        )
        self.assertEqual([s.raw["verb"] for s in steps], ["Add", "Exec", "Delete", "Atomic"])
        self.assertEqual(steps[0].raw["items"][0]["format"], "chr")
        self.assertEqual(steps[3].raw["commands"][0]["items"][0]["data"], "d")

    def test_syncbody_wrapper(self) -> None:
        """
        Fragments may come inside a SyncBody (as copied from a SyncML message).
        """
        steps = parse_profile(b"<SyncBody>" + CAMERA.split(b"?>", 1)[1] + b"<Final/></SyncBody>")
        self.assertEqual(len(steps), 1)

    def test_xml_data(self) -> None:
        """
        A Data element holding elements (an ADMX-backed policy) keeps them as XML text.
        """
        (step,) = parse_profile(
            b'<Replace><Item><Target><LocURI>./Device/Vendor/MSFT/Policy/Config/X/Y</LocURI></Target>'
            b'<Meta><Format>chr</Format></Meta><Data><enabled/><data id="a" value="1"/></Data></Item></Replace>'
        )
        self.assertEqual(step.raw["items"][0]["data"], '<enabled/><data id="a" value="1"/>')

    def test_variables(self) -> None:
        """
        The variables a step uses are kept with it.
        """
        (step,) = parse_profile(
            b"<Replace><Item><Target><LocURI>./Vendor/MSFT/Test/${DEVICE_ID}</LocURI></Target><Data>$ENROLLED_USER</Data></Item></Replace>"
        )
        self.assertEqual(step.variables, {"DEVICE_ID", "ENROLLED_USER"})

    def test_every_problem_with_its_line(self) -> None:
        """
        A bad file is refused with every problem and its line: an unknown
        variable, a Get, a nested Atomic, a Get inside Atomic (even through a
        Sequence), a bad LocURI, an item without target, an unknown element.
        """
        found = problems(
            b"<Replace><Item><Target><LocURI>./A/$NOPE</LocURI></Target><Data>1</Data></Item></Replace>\n"
            b"<Get><Item><Target><LocURI>./A</LocURI></Target></Item></Get>\n"
            b"<Atomic><Atomic><Add><Item><Target><LocURI>./B</LocURI></Target></Item></Add></Atomic></Atomic>\n"
            b"<Atomic><Sequence><Add><Item><Target><LocURI>./C</LocURI></Target></Item></Add>"
            b"<Get><Item><Target><LocURI>./C</LocURI></Target></Item></Get></Sequence></Atomic>\n"
            b"<Replace><Item><Target><LocURI>/absolute</LocURI></Target><Data>1</Data></Item></Replace>\n"
            b"<Add><Item><Data>1</Data></Item></Add>\n"
            b"<Replace><Bogus/><Item><Target><LocURI>./D</LocURI></Target></Item></Replace>\n"
        )
        self.assertEqual(len(found), 7, found)
        self.assertTrue(found[0].startswith("line 1: unknown variable $NOPE"), found[0])
        self.assertTrue(found[1].startswith("line 2: <Get>"), found[1])
        self.assertEqual(found[2], "line 3: Atomic commands cannot be nested")
        self.assertTrue(found[3].startswith("line 4: <Get>") and "not allowed" in found[3], found[3])
        self.assertTrue(found[4].startswith("line 5:") and "must not start with '/'" in found[4], found[4])
        self.assertTrue(found[5].startswith("line 6:") and "LocURI" in found[5], found[5])
        self.assertEqual(found[6], "line 7: <Replace> cannot hold <Bogus>")

    def test_not_xml(self) -> None:
        """
        A file that is not well-formed is refused with the parser's reason (and its line).
        """
        (problem,) = problems(b"<Replace>\n<Item>\n</Replace>")
        self.assertIn("line 3", problem)

    def test_empty(self) -> None:
        """
        A file without any command is refused.
        """
        self.assertEqual(len(problems(b"<!-- nothing -->")), 1)

    def test_names(self) -> None:
        """
        Names are short, URL- and shell-safe.
        """
        self.assertEqual(valid_name("camera-off.v2"), "camera-off.v2")
        for bad in ("", "-x", "a/b", "a b", "x" * 65, 3):
            self.assertRaises(InvalidProfile, valid_name, bad)


class PlanTests(SynchronousTestCase):
    def test_readbacks_and_reversal(self) -> None:
        """
        A policy Replace is read back with its format and undone by a Delete.
        """
        (step,) = parse_profile(CAMERA)
        planned = plan_step(step, {})
        assert planned.command is not None
        self.assertEqual(planned.label, "Replace ./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera")
        self.assertEqual([(r.target, r.data, r.format) for r in planned.readbacks],
                         [("./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera", "0", "int")])
        (reversal,) = planned.reversals
        self.assertTrue(reversal.delete)

    def test_expansion(self) -> None:
        """
        Variables are expanded for the device (and percent-encoded in LocURIs);
        the digest follows the expanded command.
        """
        (step,) = parse_profile(
            b"<Add><Item><Target><LocURI>./Vendor/MSFT/Test/$HOSTNAME</LocURI></Target><Data>$DEVICE_ID</Data></Item></Add>"
        )
        first = plan_step(step, {"HOSTNAME": "pc 1", "DEVICE_ID": "D1"})
        second = plan_step(step, {"HOSTNAME": "pc2", "DEVICE_ID": "D1"})
        assert first.command is not None
        self.assertEqual(first.command.items[0].target, "./Vendor/MSFT/Test/pc%201")
        self.assertEqual(first.command.items[0].data, "D1")
        self.assertNotEqual(first.digest, second.digest)
        self.assertEqual(first.digest, plan_step(step, {"HOSTNAME": "pc 1", "DEVICE_ID": "D1"}).digest)

    def test_missing_value(self) -> None:
        """
        A device without a value for a variable gets no command, and the reason.
        """
        (step,) = parse_profile(b"<Replace><Item><Target><LocURI>./Vendor/MSFT/$MSISDN</LocURI></Target><Data>1</Data></Item></Replace>")
        planned = plan_step(step, {"MSISDN": None})
        self.assertIsNone(planned.command)
        self.assertIn("$MSISDN", planned.error or "")

    def test_nodes_and_exec_are_not_read_back(self) -> None:
        """
        An interior node, a null value and an Exec have nothing to read back.
        """
        steps = parse_profile(
            b"<Add><Item><Target><LocURI>./Vendor/MSFT/N</LocURI></Target><Meta><Format>node</Format></Meta></Item></Add>"
            b"<Exec><Item><Target><LocURI>./Vendor/MSFT/E</LocURI></Target></Item></Exec>"
        )
        self.assertEqual([p.readbacks for p in plan(steps, {})], [(), ()])

    def test_json_round_trip(self) -> None:
        """
        A step survives its stored form.
        """
        (step,) = parse_profile(CAMERA)
        self.assertEqual(Step.from_json(step.as_json()), step)
