"""
The decode-error assertions the codec tests share.
"""

from __future__ import annotations

from typing import Callable

from twisted.trial.unittest import SynchronousTestCase

from mdmd.syncml.model import SyncML, SyncMLDecodeError


def assert_refused(
    case: SynchronousTestCase,
    decode: Callable[[bytes], SyncML],
    data: bytes,
    fragment: str | None = None,
    error: type[SyncMLDecodeError] = SyncMLDecodeError,
) -> None:
    """
    C{decode(data)} raises C{error} whose message contains C{fragment}.
    """
    with case.assertRaises(error) as caught:
        decode(data)
    if fragment is not None:
        case.assertIn(fragment, str(caught.exception))


def assert_decodes_or_refuses(
    case: SynchronousTestCase, decode: Callable[[bytes], SyncML], data: bytes
) -> None:
    """
    C{decode(data)} gives a message or raises L{SyncMLDecodeError}, nothing else.
    """
    try:
        case.assertIsInstance(decode(data), SyncML)
    except SyncMLDecodeError:
        pass
