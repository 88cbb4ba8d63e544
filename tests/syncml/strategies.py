"""
Hypothesis strategies for random, bounded SyncML messages.
"""

from __future__ import annotations

from hypothesis import strategies as st

from mdmd.syncml.model import (
    Add,
    Alert,
    Atomic,
    Chal,
    Command,
    Copy,
    Cred,
    Delete,
    Exec,
    Get,
    Item,
    Location,
    Meta,
    Replace,
    Results,
    Sequence,
    Status,
    SyncHdr,
    SyncML,
)

#: Text every encoding can carry: XML 1.0 characters (no C0 controls but tab,
#: LF and CR, no surrogates, no U+FFFE/U+FFFF), so also no NUL for STR_I.
xml_chars = st.characters(
    exclude_categories=["Cs"],
    exclude_characters="".join(
        [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + ["\ufffe", "\uffff"]
    ),
)
texts = st.text(alphabet=xml_chars, max_size=12)
short_texts = st.text(alphabet="abcXYZ0129./-_ &<>", max_size=8)


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


locations = st.builds(Location, loc_uri=short_texts, loc_name=optional(texts))
sizes = st.integers(min_value=0, max_value=2**40)
metas = st.builds(
    Meta,
    format=optional(st.sampled_from(["chr", "int", "b64", "bin", "node", "xml"])),
    type=optional(texts),
    mark=optional(short_texts),
    size=optional(sizes),
    version=optional(short_texts),
    next_nonce=optional(short_texts),
    max_msg_size=optional(sizes),
    max_obj_size=optional(sizes),
    emi=st.lists(short_texts, max_size=2).map(tuple),
)


def data_values(binary: bool) -> st.SearchStrategy:
    """
    Data values: text, or (for WBXML) also opaque bytes.
    """
    return texts | st.binary(max_size=12) if binary else texts


def items(binary: bool) -> st.SearchStrategy:
    return st.builds(
        Item,
        target=optional(locations),
        source=optional(locations),
        target_parent=optional(st.builds(Location, loc_uri=short_texts)),
        source_parent=optional(st.builds(Location, loc_uri=short_texts)),
        meta=optional(metas),
        data=optional(data_values(binary)),
        more_data=st.booleans(),
    )


def creds(binary: bool) -> st.SearchStrategy:
    return st.builds(Cred, meta=optional(metas), data=data_values(binary))


cmd_ids = optional(st.integers(min_value=1, max_value=999).map(str))


def commands(binary: bool, depth: int = 2) -> st.SearchStrategy:
    """
    Any encodable command; containers nest up to C{depth} levels.
    """
    item_lists = st.lists(items(binary), max_size=2).map(tuple)
    common = dict(
        cmd_id=cmd_ids, no_resp=st.booleans(), cred=optional(creds(binary)), meta=optional(metas)
    )
    leaves = st.one_of(
        *[st.builds(cls, items=item_lists, **common) for cls in (Add, Replace, Copy, Delete, Get)],
        st.builds(Exec, items=item_lists, correlator=optional(short_texts), **common),
        st.builds(
            Alert,
            cmd_id=cmd_ids,
            no_resp=st.booleans(),
            cred=optional(creds(binary)),
            data=optional(st.sampled_from(["1201", "1224", "1226", "bogus"])),
            correlator=optional(short_texts),
            items=item_lists,
        ),
        st.builds(
            Results,
            cmd_id=cmd_ids,
            msg_ref=optional(cmd_ids),
            cmd_ref=cmd_ids,
            meta=optional(metas),
            target_ref=optional(short_texts),
            source_ref=optional(short_texts),
            items=item_lists,
        ),
        st.builds(
            Status,
            cmd_id=cmd_ids,
            msg_ref=cmd_ids,
            cmd_ref=cmd_ids,
            cmd=optional(st.sampled_from(["SyncHdr", "Alert", "Replace", "Get"])),
            target_refs=st.lists(short_texts, max_size=2).map(tuple),
            source_refs=st.lists(short_texts, max_size=2).map(tuple),
            cred=optional(creds(binary)),
            chal=optional(st.builds(Chal, meta=metas)),
            data=optional(st.sampled_from(["200", "212", "401", "500"])),
            items=item_lists,
        ),
    )
    if depth == 0:
        return leaves
    children = st.lists(commands(binary, depth - 1), min_size=1, max_size=2).map(tuple)
    containers = st.one_of(
        *[
            st.builds(
                cls, cmd_id=cmd_ids, no_resp=st.booleans(), meta=optional(metas), commands=children
            )
            for cls in (Atomic, Sequence)
        ]
    )
    return leaves | containers


headers = st.builds(
    SyncHdr,
    ver_dtd=st.sampled_from(["1.2", "1.1"]),
    ver_proto=st.sampled_from(["DM/1.2", "DM/1.1"]),
    session_id=short_texts,
    msg_id=st.integers(min_value=1, max_value=99).map(str),
    target=locations,
    source=locations,
    resp_uri=optional(short_texts),
    no_resp=st.booleans(),
    cred=optional(creds(False)),
    meta=optional(metas),
)


def messages(binary: bool = False) -> st.SearchStrategy[SyncML]:
    """
    Random messages; C{binary} allows opaque C{bytes} Data (WBXML only).
    """
    return st.builds(
        SyncML,
        header=headers,
        body=st.lists(commands(binary), max_size=4).map(tuple),
        final=st.booleans(),
    )


def command_lists(binary: bool = False) -> st.SearchStrategy[list[Command]]:
    return st.lists(commands(binary), max_size=4)
