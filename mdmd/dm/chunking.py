"""
Large objects both ways (OMA DM MoreData), as values the engine applies.

A device sends a value larger than its message in chunks, each with
C{MoreData} but the last, the first with its Meta C{Size}: L{receive}
buffers them (answered 213) and hands back the whole item once the last
arrives, or the status that ends a broken one (411/412/413/424); a command
that is not the next chunk cuts off the object in progress (Alert 1225).
We send a value larger than the device's MaxMsgSize the same way:
L{next_piece} cuts the chunk that fits a message, L{OutgoingObject} says
where the next one starts; one larger than the device's MaxObjSize is not
sent at all (L{too_big}).

Nothing here changes the session: the engine moves C{SessionState.incoming}
and C{.outgoing} through the transition table (L{mdmd.dm.state}) with what
these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mdmd.dm.commands import CommandSpec
from mdmd.syncml.codec import ChunkError, Codec, data_size, next_chunk, reassemble
from mdmd.syncml.codes import StatusCode
from mdmd.syncml.model import Item, ItemCommand, Replace, Results

__all__ = [
    "IncomingObject",
    "OutgoingObject",
    "Received",
    "receive",
    "Piece",
    "next_piece",
    "chunkable",
    "too_big",
]


@dataclass(frozen=True)
class IncomingObject:
    """
    Chunks of a large object the device is sending us, so far.

    C{command} is the element that carries it (C{Results} or C{Replace});
    C{msg_ref}/C{cmd_ref} the Get that Results answer (None for Replace).
    """

    command: str
    msg_ref: str | None
    cmd_ref: str | None
    source: str | None
    chunks: tuple[Item, ...]

    def continued_by(self, command: str, msg_ref: str | None, cmd_ref: str | None, item: Item) -> bool:
        """
        Whether C{item} is the next chunk of this object (same command, same Get, same node).
        """
        return (
            self.command == command
            and self.msg_ref == msg_ref
            and self.cmd_ref == cmd_ref
            and (item.source.loc_uri if item.source else None) == self.source
        )


@dataclass(frozen=True)
class OutgoingObject:
    """
    A large object we are sending in chunks: the queued command and where its next chunk starts.
    """

    seq: int
    offset: int


@dataclass(frozen=True)
class Received:
    """
    What one Replace or Results from the device amounts to, chunk-wise.

    C{items} are the items to act on (a large object whole), or None when
    there is nothing to act on yet; then C{status} is the answer for the
    command (213 while chunks are still coming). C{incoming} is the object
    still arriving after this command; C{cut_off} an earlier object this
    command abandoned unfinished (tell the device with Alert 1225).
    """

    items: tuple[Item, ...] | None
    status: StatusCode | None = None
    incoming: IncomingObject | None = None
    cut_off: IncomingObject | None = None


def receive(
    incoming: IncomingObject | None,
    command: Replace | Results,
    msg_ref: str | None,
    cmd_ref: str | None,
    max_obj_size: int,
) -> Received:
    """
    The command's items, with a large object reassembled once its last chunk arrives.

    @param incoming: the object arriving so far, if any.
    @param max_obj_size: the largest object we accept (our MaxObjSize).
    """
    items = command.items
    cut_off = None
    if incoming is not None:
        item = items[0] if items else None
        if item is not None and incoming.continued_by(command.name, msg_ref, cmd_ref, item):
            chunks = incoming.chunks + (item,)
            if item.more_data:
                return _buffer(replace(incoming, chunks=chunks), max_obj_size, None)
            try:
                whole = reassemble(chunks)
            except ChunkError as e:
                return Received(None, e.status)
            return Received((whole,) + items[1:])
        cut_off = incoming
    if not any(i.more_data for i in items):
        return Received(items, cut_off=cut_off)
    if len(items) != 1:
        return Received(None, StatusCode.INCOMPLETE_COMMAND, cut_off=cut_off)
    item = items[0]
    size = item.meta.size if item.meta else None
    if size is not None and size > max_obj_size:
        return Received(None, StatusCode.REQUEST_ENTITY_TOO_LARGE, cut_off=cut_off)
    source = item.source.loc_uri if item.source else None
    started = IncomingObject(command.name, msg_ref, cmd_ref, source, (item,))
    return _buffer(started, max_obj_size, cut_off)


def _buffer(incoming: IncomingObject, max_obj_size: int, cut_off: IncomingObject | None) -> Received:
    total = sum(data_size(c.data) for c in incoming.chunks if c.data is not None)
    if total > max_obj_size:
        return Received(None, StatusCode.REQUEST_ENTITY_TOO_LARGE, cut_off=cut_off)
    return Received(None, StatusCode.CHUNKED_ITEM_ACCEPTED, incoming, cut_off)


@dataclass(frozen=True)
class Piece:
    """
    One chunk of our large object: the command to send, and where the next chunk starts.

    C{sending} is None when this chunk was the last.
    """

    command: ItemCommand
    sending: OutgoingObject | None


def next_piece(codec: Codec, whole: ItemCommand, seq: int, offset: int, budget: int) -> Piece | None:
    """
    The chunk of C{whole} (queued command C{seq}) that starts at C{offset} and fits C{budget} bytes.

    None when not even one character fits.
    """
    found = next_chunk(codec, whole, offset, budget)
    if found is None:
        return None
    chunk, new_offset = found
    data = whole.items[0].data
    if data is None:
        raise ValueError("only a command whose one Item holds Data is sent in chunks")
    if new_offset >= len(data):
        return Piece(chunk, None)
    return Piece(chunk, OutgoingObject(seq, new_offset))


def chunkable(spec: CommandSpec) -> bool:
    """
    Whether C{spec} may go in chunks: an Add or Replace of one value.
    """
    return spec.verb in ("Add", "Replace") and len(spec.items) == 1 and spec.items[0].data is not None


def too_big(spec: CommandSpec, max_obj_size: int | None) -> str | None:
    """
    Why C{spec} cannot be sent to a device whose MaxObjSize is C{max_obj_size}, or None.
    """
    if max_obj_size is None:
        return None
    for part in spec.walk():
        for item in part.items:
            if item.data is not None and data_size(item.data) > max_obj_size:
                return (
                    f"{item.target}: {data_size(item.data)} bytes exceed the device's "
                    f"MaxObjSize {max_obj_size}"
                )
    return None
