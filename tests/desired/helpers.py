"""
Driving desired state against emulated devices: the engine alone, without a
store (L{Driver}), and devices checking in through the real unit of work on
a store in memory (L{Fleet}).

L{Driver} plays the check-in's part: it keeps a device's records and the
commands of ours in its queue, reconciles, "sends" what is queued to a
L{SettingsTree} (the Windows emulator's tree, answering as Windows does),
feeds the answers back to L{observe} and reconciles again when a drift asks
for it, the way L{mdmd.desired.reconciler} does inside a check-in.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred

from mdmd.desired.convergence import ProfileState
from mdmd.desired.engine import Answer, Applied, Desired, Plan, Role, Ticket, observe, reconcile
from mdmd.desired.profiles import PlannedStep, Step, parse_profile, plan
from mdmd.desired.reconciler import ProfileSettings
from mdmd.dm.checkin import DMSettings, exchange
from mdmd.dm.commands import CommandSpec
from mdmd.store.runner import Store
from mdmd.syncml.codec import XML_CODEC
from mdmd.testing.devices import CLIENT_NONCE, CLIENT_SECRET, add_device
from mdmd.testing.dmclient import DMClient, SessionLog
from mdmd.testing.windows.tree import SettingsTree

DEVICE_VALUES = {"DEVICE_ID": "D1", "ENROLLED_USER": "bob@example.com"}


def steps(xml: str) -> tuple[Step, ...]:
    return parse_profile(xml.encode("utf-8"))


def replace(target: str, data: str, format: str = "chr") -> str:
    return (
        f"<Replace><Item><Target><LocURI>{target}</LocURI></Target>"
        f"<Meta><Format>{format}</Format></Meta><Data>{data}</Data></Item></Replace>"
    )


def add(target: str, data: str) -> str:
    return f"<Add><Item><Target><LocURI>{target}</LocURI></Target><Data>{data}</Data></Item></Add>"


def execute(target: str) -> str:
    return f"<Exec><Item><Target><LocURI>{target}</LocURI></Target></Item></Exec>"


@dataclass
class Catalogue:
    """
    Profile versions by (name, version), planned for one device.
    """

    versions: dict[tuple[str, int], tuple[Step, ...]] = field(default_factory=dict)
    values: Mapping[str, str | None] = field(default_factory=lambda: dict(DEVICE_VALUES))

    def add(self, name: str, xml: str) -> int:
        version = 1 + max((v for n, v in self.versions if n == name), default=0)
        self.versions[(name, version)] = steps(xml)
        return version

    def latest(self, name: str) -> int:
        return max(v for n, v in self.versions if n == name)

    def plans(self, name: str, version: int) -> tuple[PlannedStep, ...] | None:
        found = self.versions.get((name, version))
        return None if found is None else plan(found, self.values)


@dataclass
class Queued:
    ticket: Ticket
    spec: CommandSpec
    state: str = "queued"


@dataclass
class Driver:
    catalogue: Catalogue
    device: SettingsTree = field(default_factory=SettingsTree)
    records: dict[str, Applied] = field(default_factory=dict)
    queue: dict[int, Queued] = field(default_factory=dict)
    next_seq: int = 1
    now: float = 1000.0
    #: every command the device carried out: (ticket, spec)
    carried: list[tuple[Ticket, CommandSpec]] = field(default_factory=list)
    #: every plan, for assertions
    plans: list[Plan] = field(default_factory=list)

    def tickets(self) -> set[Ticket]:
        return {q.ticket for q in self.queue.values() if q.state in ("queued", "sent")}

    def carry_out(self, plan: Plan) -> None:
        self.plans.append(plan)
        for name, record in plan.records.items():
            if record is None:
                self.records.pop(name, None)
            else:
                self.records[name] = record
        withdraw = set(plan.cancel)
        for seq, queued in list(self.queue.items()):
            if queued.ticket in withdraw and queued.state == "queued":
                del self.queue[seq]
        for item in plan.queue:
            self.queue[self.next_seq] = Queued(item.ticket, item.spec)
            self.next_seq += 1

    def reconcile(self, desired: Mapping[str, int], verify: bool = False) -> Plan:
        wanted = {name: Desired(name, version) for name, version in desired.items()}
        plan = reconcile(wanted, self.records, self.tickets(), self.catalogue.plans, self.now, verify=verify)
        self.carry_out(plan)
        return plan

    def session(self, desired: Mapping[str, int], verify: bool = False, rounds: int = 5) -> None:
        """
        One session: reconcile, send everything queued, observe; again while a drift asks for it.
        """
        self.reconcile(desired, verify)
        for _ in range(rounds):
            pending = sorted(seq for seq, q in self.queue.items() if q.state == "queued")
            if not pending:
                return
            sent = []
            for seq in pending:
                self.queue[seq].state = "sent"
                sent.append(Answer(self.queue[seq].ticket, "sent"))
            self.carry_out(observe(self.records, sent, self.catalogue.plans, self.now))
            answers = [self.answer(seq) for seq in pending]
            plan = observe(self.records, answers, self.catalogue.plans, self.now)
            self.carry_out(plan)
            if plan.reconcile:
                self.reconcile(desired)

    def answer(self, seq: int) -> Answer:
        queued = self.queue.pop(seq)
        self.carried.append((queued.ticket, queued.spec))
        code, statuses, read = self.run(queued.spec, "")
        results = tuple({"source": uri, "data": value, "format": format} for uri, value, format in read)
        state = "done" if 200 <= code < 300 else "failed"
        return Answer(queued.ticket, state, code, statuses, results)

    def run(self, spec: CommandSpec, path: str) -> tuple[int, tuple[tuple[str, int], ...], list[tuple[str, str, str]]]:
        """
        Carry out a command on the device's tree: (status, member statuses, what a Get read).
        An Atomic whose member fails is rolled back and answered 507.
        """
        if spec.verb in ("Atomic", "Sequence"):
            before = copy.deepcopy((self.device.values, self.device.formats))
            statuses: list[tuple[str, int]] = []
            failed = False
            for index, child in enumerate(spec.commands, 1):
                child_path = f"{path}.{index}" if path else str(index)
                code, _, _ = self.run(child, child_path)
                statuses.append((child_path, code))
                failed = failed or not 200 <= code < 300
            if spec.verb == "Atomic" and failed:
                self.device.values, self.device.formats = before
                return 507, (("", 507), *statuses), []
            return 200, (("", 200), *statuses), []
        code, read = self.device.execute(spec.verb, [(i.target, i.data, i.format) for i in spec.items])
        return code, (("", code),), read

    def state(self, name: str) -> str | None:
        record = self.records.get(name)
        return None if record is None else record.state

    def applies(self, name: str) -> list[tuple[int, int]]:
        """
        The (version, step) of every step command of profile C{name} the device carried out, in order.
        """
        return [(t.version, t.index) for t, _ in self.carried if t.profile == name and t.role == Role.APPLY.value]


VERIFIED = ProfileState.VERIFIED.value


def as_dict(records: Mapping[str, Applied]) -> dict[str, Any]:
    return {name: record.as_dict() for name, record in records.items()}


# -- check-ins against a real store in memory ---------------------------------------------------------

CHECKIN_SETTINGS = DMSettings(require_client_certificate=False, profiles=ProfileSettings(verify_interval=3600.0, server_id="mdmd"))


@dataclass
class Fleet:
    """
    Devices in a store that check in through the real unit of work (L{exchange}), in memory.
    """

    store: Store
    now: float = 1000.0
    settings: DMSettings = CHECKIN_SETTINGS
    clients: dict[str, DMClient] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, device_id: str, kind: str = "windows", **tree: str) -> DMClient:
        self.store.run(add_device, device_id, kind=kind)
        client = DMClient(device_id, "https://mdm.example/", "device-name", CLIENT_SECRET, CLIENT_NONCE, tree=dict(tree), settings=SettingsTree())
        self.clients[device_id] = client
        return client

    def session(self, device_id: str) -> SessionLog:
        client = self.clients[device_id]

        async def post(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            message = XML_CODEC.decode(body)
            result = self.store.run(exchange, None, message, XML_CODEC, body, None, self.now, self.settings)
            self.notes += [text.format(device_id=result.device_id, **fields) for text, fields in result.notes]
            return 200, {"content-type": XML_CODEC.content_type}, result.body

        done: list[Any] = []
        d: Deferred[SessionLog] = ensureDeferred(client.session(post))
        d.addBoth(done.append)
        (log,) = done
        if not isinstance(log, SessionLog):
            log.raiseException()
        return log
