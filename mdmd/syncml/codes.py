"""
SyncML status codes (RepPro section 10 as OMA DM uses them) and OMA DM alert codes.

They are L{IntEnum}s so that C{StatusCode.OK == 200} and C{str(int(code))}
is what travels in C{<Data>}. The model keeps codes as received text (a peer
may send anything); C{parse_code} turns such text into a known member or
C{None}.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

__all__ = ["StatusCode", "AlertCode", "parse_code"]


class StatusCode(IntEnum):
    """
    The value of C{<Status><Data>}.
    """

    IN_PROGRESS = 101
    OK = 200
    ITEM_ADDED = 201
    ACCEPTED_FOR_PROCESSING = 202
    NON_AUTHORITATIVE_RESPONSE = 203
    NO_CONTENT = 204
    RESET_CONTENT = 205
    PARTIAL_CONTENT = 206
    CONFLICT_RESOLVED_WITH_MERGE = 207
    CONFLICT_RESOLVED_CLIENT_WINNING = 208
    CONFLICT_RESOLVED_WITH_DUPLICATE = 209
    DELETE_WITHOUT_ARCHIVE = 210
    ITEM_NOT_DELETED = 211
    AUTHENTICATION_ACCEPTED = 212
    CHUNKED_ITEM_ACCEPTED = 213
    OPERATION_CANCELLED = 214
    NOT_EXECUTED = 215
    ATOMIC_ROLL_BACK_OK = 216
    MULTIPLE_CHOICES = 300
    MOVED_PERMANENTLY = 301
    FOUND = 302
    SEE_OTHER = 303
    NOT_MODIFIED = 304
    USE_PROXY = 305
    BAD_REQUEST = 400
    INVALID_CREDENTIALS = 401
    PAYMENT_REQUIRED = 402
    FORBIDDEN = 403
    NOT_FOUND = 404
    COMMAND_NOT_ALLOWED = 405
    OPTIONAL_FEATURE_NOT_SUPPORTED = 406
    MISSING_CREDENTIALS = 407
    REQUEST_TIMEOUT = 408
    CONFLICT = 409
    GONE = 410
    SIZE_REQUIRED = 411
    INCOMPLETE_COMMAND = 412
    REQUEST_ENTITY_TOO_LARGE = 413
    URI_TOO_LONG = 414
    UNSUPPORTED_MEDIA_TYPE = 415
    REQUESTED_SIZE_TOO_BIG = 416
    RETRY_LATER = 417
    ALREADY_EXISTS = 418
    CONFLICT_RESOLVED_WITH_SERVER_DATA = 419
    DEVICE_FULL = 420
    UNKNOWN_SEARCH_GRAMMAR = 421
    BAD_CGI_SCRIPT = 422
    SOFT_DELETE_CONFLICT = 423
    SIZE_MISMATCH = 424
    PERMISSION_DENIED = 425
    PARTIAL_ITEM_NOT_ACCEPTED = 426
    ITEM_NOT_EMPTY = 427
    MOVE_FAILED = 428
    COMMAND_FAILED = 500
    COMMAND_NOT_IMPLEMENTED = 501
    BAD_GATEWAY = 502
    SERVICE_UNAVAILABLE = 503
    GATEWAY_TIMEOUT = 504
    DTD_VERSION_NOT_SUPPORTED = 505
    PROCESSING_ERROR = 506
    ATOMIC_FAILED = 507
    REFRESH_REQUIRED = 508
    DATA_STORE_FAILURE = 510
    SERVER_FAILURE = 511
    SYNCHRONIZATION_FAILED = 512
    PROTOCOL_VERSION_NOT_SUPPORTED = 513
    OPERATION_CANCELLED_BEFORE_PROCESSING = 514
    ATOMIC_ROLL_BACK_FAILED = 516
    ATOMIC_RESPONSE_TOO_LARGE = 517


class AlertCode(IntEnum):
    """
    The value of C{<Alert><Data>} in OMA DM.
    """

    DISPLAY = 1100
    CONFIRM_OR_REJECT = 1101
    TEXT_INPUT = 1102
    SINGLE_CHOICE = 1103
    MULTIPLE_CHOICE = 1104
    SERVER_INITIATED_MGMT = 1200
    CLIENT_INITIATED_MGMT = 1201
    NEXT_MESSAGE = 1222
    SESSION_ABORT = 1223
    CLIENT_EVENT = 1224
    NO_END_OF_DATA = 1225
    GENERIC_ALERT = 1226


_E = TypeVar("_E", StatusCode, AlertCode)


def parse_code(enum: type[_E], text: str | bytes | None) -> _E | None:
    """
    The member of C{enum} that C{text} (a received C{<Data>}) names, or C{None}.

    Surrounding whitespace is tolerated; anything else that is not a known
    decimal code gives C{None}, which the session engine answers in protocol
    terms (e.g. 406 for an alert it cannot process).
    """
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    try:
        return enum(int(text))
    except ValueError:
        return None
