"""
Tests for L{mdmd.desired.engine}: the sans-IO reconciliation, driven against
the Windows emulator's tree (L{tests.desired.helpers.Driver}), and property
tests that a device converges from any starting state and never gets a
setting twice for one version.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace as evolve

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.desired.convergence import ProfileState
from mdmd.desired.engine import Answer, Applied, Phase, Role, StepRecord, Ticket, observe
from mdmd.testing.windows.tree import SettingsTree

from .helpers import VERIFIED, Catalogue, Driver, add, execute, replace

CAMERA = "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera"
HOURS = "./Device/Vendor/MSFT/Policy/Config/Update/ActiveHoursStart"


def driver(**profiles: str) -> Driver:
    catalogue = Catalogue()
    for name, xml in profiles.items():
        catalogue.add(name, xml)
    return Driver(catalogue)


class ApplyTests(SynchronousTestCase):
    def test_converges(self) -> None:
        """
        A new profile is queued as each step followed by a Get of its value;
        once the device answers, it is verified and the device has the value.
        """
        d = driver(camera=replace(CAMERA, "0", "int") + replace(HOURS, "8", "int"))
        plan = d.reconcile({"camera": 1})
        self.assertEqual([(q.ticket.role, q.spec.verb) for q in plan.queue],
                         [("apply", "Replace"), ("check", "Get"), ("apply", "Replace"), ("check", "Get")])
        self.assertEqual(d.state("camera"), ProfileState.PENDING.value)
        d.session({"camera": 1})
        self.assertEqual(d.state("camera"), VERIFIED)
        self.assertEqual(d.device.value(CAMERA), "0")
        self.assertEqual(d.records["camera"].verified_at, d.now)

    def test_states_on_the_way(self) -> None:
        """
        pending → sent once its first command goes, verifying once every step succeeded, then verified.
        """
        d = driver(camera=replace(CAMERA, "0", "int"))
        plan = d.reconcile({"camera": 1})
        apply, check = plan.queue
        seen = []
        for answer in (Answer(apply.ticket, "sent"), Answer(check.ticket, "sent"), Answer(apply.ticket, "done", 200),
                       Answer(check.ticket, "done", 200, results=({"source": CAMERA, "data": "0"},))):
            d.carry_out(observe(d.records, [answer], d.catalogue.plans, d.now))
            seen.append(d.state("camera"))
        self.assertEqual(seen, ["sent", "sent", "verifying", "verified"])

    def test_nothing_twice(self) -> None:
        """
        Reconciling a verified device again queues nothing.
        """
        d = driver(camera=replace(CAMERA, "0", "int"))
        d.session({"camera": 1})
        self.assertEqual(d.reconcile({"camera": 1}).queue, [])

    def test_refused(self) -> None:
        """
        A command the device refuses fails the profile with the device's status and the command.
        """
        d = driver(camera=replace(CAMERA, "0", "int"))
        d.device.refuse[CAMERA] = 500
        d.session({"camera": 1})
        record = d.records["camera"]
        self.assertEqual(record.state, ProfileState.FAILED.value)
        assert record.failure is not None
        self.assertEqual((record.failure["status"], record.failure["command"]), (500, f"Replace {CAMERA}"))

    def test_read_back_differs(self) -> None:
        """
        A value read back that is not the one written is a failure, not verified.
        """
        d = driver(camera=replace(CAMERA, "0", "int"))
        d.device.reads[CAMERA] = "1"
        d.session({"camera": 1})
        failure = d.records["camera"].failure
        assert failure is not None
        self.assertEqual(d.state("camera"), ProfileState.FAILED.value)
        self.assertIsNone(failure["status"])
        self.assertEqual(failure["command"], f"Get {CAMERA}")
        self.assertIn("expected '0'", failure["error"])

    def test_atomic_member(self) -> None:
        """
        When an Atomic fails, the failure names the member the device refused.
        """
        d = driver(group="<Atomic>" + replace(HOURS, "8", "int") + replace(CAMERA, "0", "int") + "</Atomic>")
        d.device.refuse[CAMERA] = 405
        d.session({"group": 1})
        failure = d.records["group"].failure
        assert failure is not None
        self.assertEqual((failure["status"], failure["command"]), (507, f"Replace {CAMERA}"))
        self.assertIsNone(d.device.value(HOURS))

    def test_add_of_existing_node(self) -> None:
        """
        An Add answered 418 (already exists) is verified by its read-back like any other.
        """
        d = driver(node=add("./Vendor/MSFT/Test/A", "a"))
        d.device.set("./Vendor/MSFT/Test/A", "a")
        d.session({"node": 1})
        self.assertEqual(d.state("node"), VERIFIED)
        d2 = driver(node=add("./Vendor/MSFT/Test/A", "a"))
        d2.device.set("./Vendor/MSFT/Test/A", "b")
        d2.session({"node": 1})
        self.assertEqual(d2.state("node"), ProfileState.FAILED.value)

    def test_exec_needs_no_read_back(self) -> None:
        """
        A step without a value to read back is verified by its status.
        """
        d = driver(reboot=execute("./Device/Vendor/MSFT/Reboot/RebootNow"))
        d.session({"reboot": 1})
        self.assertEqual(d.state("reboot"), VERIFIED)
        self.assertEqual(d.device.executed, ["./Device/Vendor/MSFT/Reboot/RebootNow"])

    def test_missing_variable(self) -> None:
        """
        A device without a value for a variable fails that step (no command
        sent); it is retried at the verification once the value is known.
        """
        d = driver(number=replace("./Vendor/MSFT/Test/Number", "$MSISDN"))
        d.session({"number": 1})
        self.assertEqual(d.state("number"), ProfileState.FAILED.value)
        self.assertEqual(d.carried, [])
        assert d.records["number"].failure is not None
        self.assertIn("$MSISDN", d.records["number"].failure["error"])
        d.catalogue.values = {**d.catalogue.values, "MSISDN": "+4917012345"}
        d.session({"number": 1}, verify=True)
        self.assertEqual(d.state("number"), VERIFIED)
        self.assertEqual(d.device.value("./Vendor/MSFT/Test/Number"), "+4917012345")

    def test_retry_at_verification(self) -> None:
        """
        A failed version is tried again at the verification, with the event kept; not before.
        """
        d = driver(camera=replace(CAMERA, "0", "int"))
        d.device.refuse[CAMERA] = 500
        d.session({"camera": 1})
        d.session({"camera": 1})
        self.assertEqual(d.applies("camera"), [(1, 0)])
        del d.device.refuse[CAMERA]
        d.session({"camera": 1}, verify=True)
        self.assertEqual(d.applies("camera"), [(1, 0), (1, 0)])
        self.assertEqual(d.state("camera"), VERIFIED)
        self.assertEqual([e["event"] for e in d.records["camera"].events], ["retry"])

    def test_record_round_trip(self) -> None:
        """
        A record survives its stored form.
        """
        d = driver(camera=replace(CAMERA, "0", "int"))
        d.device.refuse[CAMERA] = 500
        d.session({"camera": 1})
        record = d.records["camera"]
        self.assertEqual(Applied.from_dict(record.as_dict()), record)


class DriftTests(SynchronousTestCase):
    def test_reapplied(self) -> None:
        """
        The verification reads every verified value back; a value changed on
        the device drifts the profile, is applied again and verified again,
        and the drift is kept in the record's events.
        """
        d = driver(camera=replace(CAMERA, "0", "int") + replace(HOURS, "8", "int"))
        d.session({"camera": 1})
        d.session({"camera": 1}, verify=True)
        self.assertEqual(d.applies("camera"), [(1, 0), (1, 1)])
        d.device.set(CAMERA, "1", "int")
        d.reconcile({"camera": 1}, verify=True)
        verifies = [q for q in d.queue.values() if q.ticket.role == Role.VERIFY.value]
        self.assertEqual(len(verifies), 2)
        d.session({"camera": 1})
        self.assertEqual(d.applies("camera"), [(1, 0), (1, 1), (1, 0)])
        self.assertEqual(d.state("camera"), VERIFIED)
        self.assertEqual(d.device.value(CAMERA), "0")
        (event,) = d.records["camera"].events
        self.assertEqual(event["event"], "drift")
        self.assertIn("read '1'", event["detail"])

    def test_drifted_state(self) -> None:
        """
        Between the drift and its re-application the profile is drifted.
        """
        d = driver(camera=replace(CAMERA, "0", "int"))
        d.session({"camera": 1})
        d.device.values.pop("./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera")
        plan = d.reconcile({"camera": 1}, verify=True)
        (verify,) = plan.queue
        answer = Answer(verify.ticket, "failed", 404)
        result = observe(d.records, [answer], d.catalogue.plans, d.now)
        self.assertTrue(result.reconcile)
        self.assertEqual(result.records["camera"].state, ProfileState.DRIFTED.value)  # type: ignore[union-attr]

    def test_unreadable_is_not_drift(self) -> None:
        """
        A read-back that fails for another reason than a missing node (500) is an event, not a drift.
        """
        d = driver(camera=replace(CAMERA, "0", "int"))
        d.session({"camera": 1})
        (verify,) = d.reconcile({"camera": 1}, verify=True).queue
        result = observe(d.records, [Answer(verify.ticket, "failed", 500)], d.catalogue.plans, d.now)
        self.assertFalse(result.reconcile)
        record = result.records["camera"]
        assert record is not None
        self.assertEqual((record.state, record.events[-1]["event"]), (VERIFIED, "unverified"))


class RemovalTests(SynchronousTestCase):
    def test_policy_and_added_nodes_deleted(self) -> None:
        """
        Unassigning sends the Delete of every node the profile added and of
        every Policy CSP value it set; once answered the record goes.
        """
        d = driver(p=replace(CAMERA, "0", "int") + add("./Vendor/MSFT/Test/A", "a"))
        d.session({"p": 1})
        plan = d.reconcile({})
        self.assertEqual([(q.spec.verb, q.spec.items[0].target) for q in plan.queue],
                         [("Delete", "./Vendor/MSFT/Test/A"), ("Delete", CAMERA)])
        self.assertEqual(d.state("p"), ProfileState.REMOVING.value)
        d.session({})
        self.assertIsNone(d.state("p"))
        self.assertIsNone(d.device.value(CAMERA))

    def test_already_gone(self) -> None:
        """
        A Delete answered 404 (the node is not there) completes the removal.
        """
        d = driver(p=replace(CAMERA, "0", "int"))
        d.session({"p": 1})
        d.device.values.clear()
        d.session({})
        self.assertIsNone(d.state("p"))

    def test_cannot_revert(self) -> None:
        """
        Settings a CSP cannot revert stay, and the status says so (retained, with the reasons).
        """
        d = driver(p=replace("./Vendor/MSFT/DMClient/Provider/P/EntDeviceName", "pc") + execute("./Device/Vendor/MSFT/Reboot/RebootNow"))
        d.session({"p": 1})
        d.session({})
        record = d.records["p"]
        self.assertEqual(record.state, ProfileState.RETAINED.value)
        self.assertEqual(len(record.retained), 2)
        self.assertIn("cannot be undone", record.retained[0])
        self.assertIn("left as set", record.retained[1])

    def test_delete_refused(self) -> None:
        """
        A Delete the device refuses leaves the profile retained, naming the setting and the status.
        """
        d = driver(p=replace(CAMERA, "0", "int"))
        d.session({"p": 1})
        d.device.refuse[CAMERA] = 500
        d.session({})
        record = d.records["p"]
        self.assertEqual(record.state, ProfileState.RETAINED.value)
        self.assertEqual(record.retained, (f"{CAMERA}: its Delete answered 500",))

    def test_never_sent(self) -> None:
        """
        A profile removed before any of it went out is withdrawn: nothing to delete, the record goes.
        """
        d = driver(p=replace(CAMERA, "0", "int"))
        d.reconcile({"p": 1})
        plan = d.reconcile({})
        self.assertEqual(len(plan.cancel), 2)
        self.assertEqual(plan.queue, [])
        self.assertIsNone(d.state("p"))
        self.assertEqual(d.queue, {})

    def test_assigned_again_while_removing(self) -> None:
        """
        A profile assigned again while its removal is on its way starts over.
        """
        d = driver(p=replace(CAMERA, "0", "int"))
        d.session({"p": 1})
        d.reconcile({})
        d.session({"p": 1})
        self.assertEqual(d.state("p"), VERIFIED)
        self.assertEqual(d.device.value(CAMERA), "0")


class VersionTests(SynchronousTestCase):
    def test_only_changes_sent(self) -> None:
        """
        A newer version sends only its changed steps; a setting it drops is
        deleted (before the new ones go); nothing already verified goes again.
        """
        d = driver(p=replace(CAMERA, "0", "int") + replace(HOURS, "8", "int") + add("./Vendor/MSFT/Test/A", "a"))
        d.session({"p": 1})
        d.catalogue.add("p", replace(CAMERA, "0", "int") + replace(HOURS, "9", "int"))
        plan = d.reconcile({"p": 2})
        self.assertEqual([(q.ticket.role, q.spec.verb, q.spec.items[0].target) for q in plan.queue],
                         [("revert", "Delete", "./Vendor/MSFT/Test/A"), ("apply", "Replace", HOURS), ("check", "Get", HOURS)])
        d.session({"p": 2})
        self.assertEqual(d.state("p"), VERIFIED)
        self.assertEqual(d.records["p"].version, 2)
        self.assertEqual(d.device.value(HOURS), "9")
        self.assertIsNone(d.device.value("./Vendor/MSFT/Test/A"))
        self.assertEqual(d.applies("p"), [(1, 0), (1, 1), (1, 2), (2, 1)])

    def test_superseded_commands_withdrawn(self) -> None:
        """
        Commands of an older version still queued are withdrawn; answers to
        those already sent are ignored.
        """
        d = driver(p=replace(CAMERA, "0", "int"))
        first = d.reconcile({"p": 1})
        d.catalogue.add("p", replace(CAMERA, "1", "int"))
        second = d.reconcile({"p": 2})
        self.assertEqual(sorted(second.cancel), sorted(q.ticket for q in first.queue))
        stale = Answer(Ticket("p", 1, Role.APPLY.value, 0), "failed", 500)
        self.assertEqual(observe(d.records, [stale], d.catalogue.plans, d.now).records, {})
        d.session({"p": 2})
        self.assertEqual(d.device.value(CAMERA), "1")


# -- properties --------------------------------------------------------------------------------

#: Settings a profile is made of (each profile writes its own nodes: profiles do not overlap).
POOL = [
    lambda n: replace(f"./Device/Vendor/MSFT/Policy/Config/{n}/Int", "1", "int"),
    lambda n: replace(f"./Device/Vendor/MSFT/Policy/Config/{n}/Int2", "2", "int"),
    lambda n: replace(f"./Device/Vendor/MSFT/Policy/Config/{n}/Bool", "true", "bool"),
    lambda n: add(f"./Vendor/MSFT/Test/{n}/Node", "$DEVICE_ID"),
    lambda n: replace(f"./Vendor/MSFT/Test/{n}/Other", "x"),
    lambda n: execute("./Device/Vendor/MSFT/Reboot/RebootNow"),
    lambda n: "<Atomic>" + replace(f"./Device/Vendor/MSFT/Policy/Config/{n}/A", "a") + replace(f"./Device/Vendor/MSFT/Policy/Config/{n}/B", "b") + "</Atomic>",
]

NAMES = ("alpha", "beta", "gamma")

versions = st.lists(st.lists(st.sampled_from(range(len(POOL))), min_size=1, max_size=3, unique=True), min_size=1, max_size=3)
catalogues = st.fixed_dictionaries({name: versions for name in NAMES})
phases = st.sampled_from([p.value for p in Phase])
states = st.sampled_from([s.value for s in ProfileState])


def build(chosen: dict[str, list[list[int]]]) -> Catalogue:
    catalogue = Catalogue()
    for name, version_list in chosen.items():
        for picks in version_list:
            catalogue.add(name, "".join(POOL[i](name) for i in picks))
    return catalogue


@st.composite
def starting_records(draw: st.DrawFn, catalogue: Catalogue) -> dict[str, Applied]:
    """
    Any record a device may have: any version, state, step phases, failure, removal.
    """
    records = {}
    for name in NAMES:
        if not draw(st.booleans()):
            continue
        version = draw(st.integers(1, catalogue.latest(name)))
        planned = catalogue.plans(name, version)
        assert planned is not None
        state = draw(states)
        steps = tuple(
            StepRecord(draw(phases), p.digest, tuple(range(len(p.readbacks))) if draw(st.booleans()) else (), draw(st.booleans()))
            for p in planned
        )
        reverts: tuple[tuple[str, str], ...] = ()
        if state == ProfileState.REMOVING.value:
            reverts = tuple((r.target, draw(st.sampled_from(["queued", "sent", "done"])))
                            for p in planned for r in p.reversals if r.delete)
        records[name] = Applied(name, version, state, steps, drifted=draw(st.booleans()), reverts=reverts)
    return records


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=150)
    @given(st.data(), catalogues)
    def test_converges_from_any_state(self, data: st.DataObject, chosen: dict[str, list[list[int]]]) -> None:
        """
        Whatever a device's records say, and whatever its tree holds, a
        healthy device ends with every desired profile verified at its latest
        version with its values set, and no record of the others but those
        retained (what cannot be undone).
        """
        catalogue = build(chosen)
        d = Driver(catalogue, SettingsTree(), data.draw(starting_records(catalogue)))
        for name in NAMES:
            if data.draw(st.booleans()):
                d.device.set(f"./Device/Vendor/MSFT/Policy/Config/{name}/Int", "7", "int")
        desired = {n: catalogue.latest(n) for n in NAMES if data.draw(st.booleans())}
        for round in range(6):
            d.session(desired, verify=round % 2 == 1)
            d.now += 100
        for name in NAMES:
            record = d.records.get(name)
            if name in desired:
                assert record is not None
                self.assertEqual((record.state, record.version), (VERIFIED, desired[name]), record)
                for planned in catalogue.plans(name, desired[name]) or ():
                    for readback in planned.readbacks:
                        self.assertEqual(d.device.value(readback.target), readback.data)
            else:
                self.assertIn(None if record is None else record.state, (None, ProfileState.RETAINED.value))
        self.assertEqual([q for q in d.queue.values()], [])

    @settings(max_examples=150)
    @given(catalogues, st.lists(st.tuples(st.sampled_from(NAMES), st.booleans(), st.booleans()), max_size=12))
    def test_never_twice_per_version(self, chosen: dict[str, list[list[int]]], events: list[tuple[str, bool, bool]]) -> None:
        """
        Through any sequence of assignments, unassignments, newer versions and
        verifications on a device that keeps what it is given, no step of a
        version is sent more often than the version was assigned (once, unless
        it was removed and assigned again); and the device ends converged.
        """
        catalogue = build(chosen)
        d = Driver(catalogue)
        desired: dict[str, int] = {}
        version = {name: 1 for name in NAMES}
        episodes: Counter[tuple[str, int]] = Counter()
        for name, toggle, newer in events:
            if newer and version[name] < catalogue.latest(name):
                version[name] += 1
                if name in desired:
                    desired[name] = version[name]
                    episodes[(name, version[name])] += 1
            elif toggle and name in desired:
                del desired[name]
            elif toggle:
                desired[name] = version[name]
                episodes[(name, version[name])] += 1
            d.session(desired, verify=newer)
            d.now += 100
        sent = Counter((t.profile, t.version, t.index) for t, _ in d.carried if t.role == Role.APPLY.value)
        for (name, number, index), count in sent.items():
            self.assertLessEqual(count, episodes[(name, number)], (name, number, index))
        for name, number in desired.items():
            self.assertEqual((d.state(name), d.records[name].version), (VERIFIED, number))


class TicketTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        A ticket survives its stored form; a step record too.
        """
        ticket = Ticket("p", 2, "check", 1, 3)
        self.assertEqual(Ticket.of(ticket.as_tuple()), ticket)
        step = StepRecord("failed", "abc", (1,), True, 500, "Replace ./X", "Replace ./X: answered 500")
        self.assertEqual(StepRecord.of(step.as_list()), step)
        self.assertEqual(evolve(step, phase="queued").phase, "queued")
