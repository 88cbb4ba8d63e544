"""
Counts kept as the records change, so that "how many" never walks the records.

A L{Family} is one attribute of one kind of record (the status of devices,
the state of push jobs, ...) with a counter per value. Whoever changes the
attribute calls L{Family.move} (or L{Family.add}, L{Family.discard} when a
record appears or goes) in the same unit of work, so a count is exactly as
current as the records: it commits or aborts with them.

Counters are C{BTrees.Length.Length} objects under the root's C{counters}
tree, keyed by (family name, value). A C{Length} resolves concurrent changes
(two transactions adding one each commit as plus two), so a busy counter is
not a conflict between the units of work that share it. Creating a key is a
change of the tree itself, which concurrent units do conflict on: every
declared value is created before the daemon serves (L{ensure}, at start-up),
and only a value nobody declared is ever created on the way.

A family may also keep the set of its members' keys per value
(C{members=True}): an index that lists the records with a value without
walking the others (the devices of a status or kind). Member sets live under
the root's C{members} tree, keyed like the counters.

A family is a plain declaration, made where its values are spelled (the
lifecycle of the records); it holds no state. Families made at run time
(issue 14's per-profile convergence counts) call L{Family.ensure} when they
are created, outside the hot units of work.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from BTrees.Length import Length
from BTrees.OOBTree import OOTreeSet

__all__ = ["COUNTERS", "MEMBERS", "Family", "ensure", "read_all"]

Root = MutableMapping[str, Any]

#: The root containers: (family, value) → C{Length}, and (family, value) → C{OOTreeSet} of member keys.
COUNTERS = "counters"
MEMBERS = "members"


@dataclass(frozen=True)
class Family:
    """
    A counter per value of one attribute of one kind of record.
    """

    #: dotted, for reading: "devices.status", "pushes.state"
    name: str
    #: every value the attribute takes, created ahead (in the order they are shown)
    values: tuple[str, ...]
    #: whether each value also keeps the set of its members' keys
    members: bool = False

    # -- keeping ---------------------------------------------------------------

    def ensure(self, root: Root) -> bool:
        """
        Create the counters (and member sets) of every declared value that
        has none yet; return whether anything was created.
        """
        created = False
        for value in self.values:
            key = (self.name, value)
            if key not in root[COUNTERS]:
                root[COUNTERS][key] = Length()
                created = True
            if self.members and key not in root[MEMBERS]:
                root[MEMBERS][key] = OOTreeSet()
                created = True
        return created

    def reset(self, root: Root) -> None:
        """
        Zero every counter and empty every member set: a recount starts here.
        """
        self.ensure(root)
        for key, counter in root[COUNTERS].items(**self._range()):
            if counter():
                counter.set(0)
        if self.members:
            for members in root[MEMBERS].values(**self._range()):
                members.clear()

    def add(self, root: Root, value: str, member: Any = None) -> None:
        """
        A record with C{value} appeared (C{member}: its key, for a family with member sets).
        """
        self._counter(root, value).change(1)
        if self.members:
            self._members(root, value).add(self._member(member))

    def discard(self, root: Root, value: str, member: Any = None) -> None:
        """
        A record with C{value} went.
        """
        self._counter(root, value).change(-1)
        if self.members:
            self._members(root, value).discard(self._member(member))

    def move(self, root: Root, old: str | None, new: str | None, member: Any = None) -> None:
        """
        A record's value changed from C{old} to C{new} (None: it had none, or has none now).
        """
        if old == new:
            return
        if old is not None:
            self.discard(root, old, member)
        if new is not None:
            self.add(root, new, member)

    # -- reading ---------------------------------------------------------------

    def counts(self, root: Root) -> dict[str, int]:
        """
        Every declared value's count (0 if it has no counter yet), then any other value counted.
        """
        found = dict.fromkeys(self.values, 0)
        for (_, value), counter in root[COUNTERS].items(**self._range()):
            found[value] = counter()
        return found

    def count(self, root: Root, value: str) -> int:
        counter = root[COUNTERS].get((self.name, value))
        return 0 if counter is None else int(counter())

    def total(self, root: Root) -> int:
        return sum(self.counts(root).values())

    def member_set(self, root: Root, value: str) -> Any:
        """
        The set of the keys of the records with C{value} (an empty set if there is none yet).
        """
        if not self.members:
            raise TypeError(f"the family {self.name} keeps no member sets")
        members = root[MEMBERS].get((self.name, value))
        return OOTreeSet() if members is None else members

    # -- the keys ----------------------------------------------------------------

    def _range(self) -> dict[str, Any]:
        """
        The range of the family's keys in a tree: every (name, value) and nothing else.
        """
        return {"min": (self.name,), "max": (self.name + "\0",), "excludemax": True}

    def _counter(self, root: Root, value: str) -> Any:
        key = (self.name, value)
        counter = root[COUNTERS].get(key)
        if counter is None:
            counter = root[COUNTERS][key] = Length()
        return counter

    def _members(self, root: Root, value: str) -> Any:
        key = (self.name, value)
        members = root[MEMBERS].get(key)
        if members is None:
            members = root[MEMBERS][key] = OOTreeSet()
        return members

    def _member(self, member: Any) -> Any:
        if member is None:
            raise TypeError(f"the family {self.name} keeps member sets: name the record")
        return member


def ensure(root: Root, families: Iterable[Family]) -> bool:
    """
    Create every declared counter and member set that is missing; return whether any was.
    """
    created = False
    for family in families:
        created = family.ensure(root) or created
    return created


def read_all(root: Root) -> dict[str, dict[str, int]]:
    """
    Every counter in the store, by family then value (O(number of counters), never of records).
    """
    found: dict[str, dict[str, int]] = {}
    for (family, value), counter in root[COUNTERS].items():
        found.setdefault(family, {})[value] = int(counter())
    return found
