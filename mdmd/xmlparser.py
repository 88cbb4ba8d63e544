"""
The one XML parser every mdmd codec uses: no DTDs, no entities, no network.

Enrollment SOAP and SyncML arrive from untrusted peers, so parsing refuses
anything that could make the parser read files, reach the network or expand
entities, and it drops comments and processing instructions, which no
protocol we speak gives meaning to.
"""

from __future__ import annotations

import threading

from lxml import etree

from mdmd.errors import PeerError

__all__ = ["MalformedXML", "parse", "localname"]


class MalformedXML(PeerError):
    """
    The peer sent bytes that are not a well-formed, DTD-free XML document.
    """


_local = threading.local()


def _parser() -> etree.XMLParser:
    """
    This thread's parser: making one costs more than a small parse, and
    lxml parsers must not be shared between threads.
    """
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _new_parser()
    return parser


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def parse(data: bytes) -> etree._Element:
    """
    Parse C{data} into an element tree root.

    @raise MalformedXML: if the document is not well-formed or carries a
        document type declaration.
    """
    if not data or not data.strip():
        raise MalformedXML("empty document")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as e:
        raise MalformedXML(f"not well-formed XML: {e}") from None
    except ValueError as e:  # e.g. unicode strings with an encoding declaration
        raise MalformedXML(str(e)) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise MalformedXML("document type declarations are not allowed")
    return root


def localname(element: etree._Element) -> str:
    """
    The tag of C{element} without its namespace: peers disagree on namespaces.
    """
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return etree.QName(tag).localname
