"""
One interface to both SyncML encodings, plus message sizing and large-object chunking.

The session engine picks a L{Codec} from the request's Content-Type
(L{codec_for_content_type}), decodes with it, and answers in the same
encoding and media type: the DM types, or the SyncML DS types that some DM
clients send (libdmclient does), whose codecs differ only in that name. MaxMsgSize and MaxObjSize count I{encoded bytes of the encoding in
use}: C{codec.envelope_size(header, final)} plus C{codec.command_size(c)}
for each command is an upper bound of C{len(codec.encode(msg))}, and equal
to it for XML and for any message with C{Final}. A command too large for a
message goes in chunks (L{next_chunk}, L{split_command}); received chunks
are joined with L{reassemble}.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import ModuleType
from typing import Callable, Sequence, TypeVar

from mdmd.errors import PeerError
from mdmd.syncml import wbxml, xml
from mdmd.syncml.codes import StatusCode
from mdmd.syncml.model import Command, Data, Item, ItemCommand, Meta, SyncHdr, SyncML

__all__ = [
    "Codec",
    "XML_CODEC",
    "WBXML_CODEC",
    "DS_XML_CODEC",
    "DS_WBXML_CODEC",
    "CONTENT_TYPES",
    "codec_for_content_type",
    "ChunkError",
    "data_size",
    "next_chunk",
    "split_command",
    "reassemble",
]


@dataclass(frozen=True)
class Codec:
    """
    An encoding of SyncML: its media type, its codec functions and its sizing functions.
    """

    name: str
    content_type: str
    encode: Callable[[SyncML], bytes]
    decode: Callable[[bytes], SyncML]
    envelope_size: Callable[[SyncHdr, bool], int]
    command_size: Callable[[Command], int]

    @classmethod
    def of(cls, module: ModuleType) -> Codec:
        """
        The codec a module (L{xml}, L{wbxml}) implements.
        """
        return cls(
            name=module.__name__.rsplit(".", 1)[-1],
            content_type=module.CONTENT_TYPE,
            encode=module.encode,
            decode=module.decode,
            envelope_size=module.envelope_size,
            command_size=module.command_size,
        )


XML_CODEC = Codec.of(xml)
WBXML_CODEC = Codec.of(wbxml)
#: The same encodings under the SyncML DS media types (C{application/vnd.syncml+xml}, C{+wbxml}).
DS_XML_CODEC = replace(XML_CODEC, content_type="application/vnd.syncml+xml")
DS_WBXML_CODEC = replace(WBXML_CODEC, content_type="application/vnd.syncml+wbxml")
_BY_TYPE = {codec.content_type: codec for codec in (XML_CODEC, WBXML_CODEC, DS_XML_CODEC, DS_WBXML_CODEC)}
#: Every media type a DM message may come in (and is answered in).
CONTENT_TYPES = tuple(_BY_TYPE)


def codec_for_content_type(content_type: str | bytes | None) -> Codec | None:
    """
    The codec for a Content-Type value (parameters and case ignored), or C{None} (answer 415).
    """
    if content_type is None:
        return None
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    return _BY_TYPE.get(content_type.split(";", 1)[0].strip().lower())


# -- large objects ----------------------------------------------------------------------


class ChunkError(PeerError):
    """
    Received chunks of a large object do not make the object they announced.

    C{status} is what to answer for the command that carried the last chunk:
    the class declares the usual one (412), an instance may name a precise one.
    """

    syncml_status = StatusCode.INCOMPLETE_COMMAND

    def __init__(self, message: str, status: StatusCode | None = None) -> None:
        super().__init__(message)
        self.status = StatusCode(self.syncml_status) if status is None else status


def data_size(data: Data) -> int:
    """
    The byte length of a Data value as carried (UTF-8 for text): what Meta Size counts.
    """
    return len(data) if isinstance(data, bytes) else len(data.encode("utf-8"))


_C = TypeVar("_C", bound=ItemCommand)


def _chunk(command: _C, item: Item, data: Data, start: int, stop: int) -> _C:
    meta = item.meta
    if start == 0:
        meta = replace(meta or Meta(), size=data_size(data))
    elif meta is not None and meta.size is not None:
        meta = replace(meta, size=None)
    piece = replace(item, meta=meta, data=data[start:stop], more_data=stop < len(data))
    return replace(command, items=(piece,))


def _chunked_data(command: ItemCommand) -> Data:
    items = command.items
    data = items[0].data if len(items) == 1 else None
    if data is None:
        raise ValueError("only a command with exactly one Item holding Data can be chunked")
    return data


def next_chunk(codec: Codec, command: _C, offset: int, budget: int) -> tuple[_C, int] | None:
    """
    The part of C{command} that starts at C{offset} and takes at most C{budget} encoded bytes.

    C{command} carries one Item with Data (str or bytes); C{offset} counts
    characters or bytes of that Data. Returns the command to send and the
    offset to continue from (C{len(data)} when done), or C{None} when not
    even one character fits. At offset 0 a command that fits whole comes
    back unchanged; otherwise the chunk repeats the command and the Item's
    Target/Source/Meta, has C{MoreData} unless it is the last one, and the
    first chunk's Item Meta carries the total C{Size}.
    """
    data = _chunked_data(command)
    item = command.items[0]
    if offset == 0 and codec.command_size(command) <= budget:
        return command, len(data)

    def fits(stop: int) -> bool:
        return codec.command_size(_chunk(command, item, data, offset, stop)) <= budget

    # Every character costs at least one byte, so no more than `budget` of them fit.
    high = min(len(data), offset + budget)
    if fits(high):
        return _chunk(command, item, data, offset, high), high
    low = offset  # invariant: low fits (or is the start), high does not
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    if low == offset:
        return None
    return _chunk(command, item, data, offset, low), low


def split_command(
    codec: Codec, command: _C, budget: int, first_budget: int | None = None
) -> list[_C]:
    """
    Every chunk of C{command}: the first fits C{first_budget} (default C{budget}), others C{budget}.

    @raise ValueError: if a chunk of C{budget} bytes cannot carry any data.
    """
    data = _chunked_data(command)
    chunks: list[_C] = []
    offset = 0
    allowed = budget if first_budget is None else first_budget
    while offset < len(data) or not chunks:
        found = next_chunk(codec, command, offset, allowed)
        if found is None:
            if offset == 0 and allowed != budget:
                allowed = budget
                continue
            raise ValueError(f"a budget of {budget} bytes cannot carry any data of this command")
        chunk, offset = found
        chunks.append(chunk)
        allowed = budget
    return chunks


def reassemble(chunks: Sequence[Item]) -> Item:
    """
    The Item that received chunks make, checked against the Size of the first.

    @raise ChunkError: 411 if the first chunk has no Meta Size, 424 if the
        joined data has another size, 412 if the sequence is not one whole
        object (MoreData on the last, or missing on an earlier one).
    """
    if not chunks:
        raise ValueError("no chunks")
    first = chunks[0]
    if any(not c.more_data for c in chunks[:-1]) or chunks[-1].more_data:
        raise ChunkError("chunks do not form one object", StatusCode.INCOMPLETE_COMMAND)
    if first.meta is None or first.meta.size is None:
        raise ChunkError("first chunk has no Meta Size", StatusCode.SIZE_REQUIRED)
    pieces = [c.data for c in chunks if c.data is not None]
    texts = [p for p in pieces if isinstance(p, str)]
    whole: Data
    if len(texts) == len(pieces):
        whole = "".join(texts)
    else:
        whole = b"".join(p.encode("utf-8") if isinstance(p, str) else p for p in pieces)
    size = data_size(whole)
    if size != first.meta.size:
        raise ChunkError(
            f"object announced {first.meta.size} bytes, chunks carry {size}",
            StatusCode.SIZE_MISMATCH,
        )
    return replace(first, data=whole, more_data=False)
