"""
Every persistent class mdmd stores, in one module.

Pickles name their classes, so these are never renamed or moved without
leaving an alias behind. Records hold plain values only (str, int, float,
bytes, tuples): certificates as DER bytes, times as POSIX seconds. What goes
back to the reactor thread is never one of these objects but a plain copy.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from BTrees.IIBTree import IITreeSet
from BTrees.IOBTree import IOBTree
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree, OOTreeSet
from persistent import Persistent

#: The layout of the root this code reads and writes. A store made by an
#: older mdmd is brought to it at start-up, before anything is served
#: (L{mdmd.store.migration}); a newer one is refused.
#:  1. (no record) the containers up to issue 12
#:  2. counters (L{mdmd.store.counters}), device member sets, the per-device
#:     certificate index and the push-job index
#:  3. due indexes: sessions by deadline, push jobs by expiry and by finish time
SCHEMA_VERSION = 3


class User(Persistent):
    """
    An account allowed to enroll devices (OnPremise and Federated policies).
    """

    def __init__(self, name: str, password_hash: str, created_at: float) -> None:
        self.name = name
        self.password_hash = password_hash
        self.enabled = True
        self.created_at = created_at


class IssuedCertificate(Persistent):
    """
    A certificate our CA issued: kept whole (DER) with its fate.
    """

    def __init__(
        self,
        serial: int,
        der: bytes,
        device_id: str,
        thumbprint: str,
        not_before: float,
        not_after: float,
        issued_at: float,
    ) -> None:
        self.serial = serial
        self.der = der
        self.device_id = device_id
        self.thumbprint = thumbprint
        self.not_before = not_before
        self.not_after = not_after
        self.issued_at = issued_at
        self.status = "valid"
        self.revoked_at: float | None = None
        self.revocation_reason: str | None = None


class Device(Persistent):
    """
    A managed device (Windows or classic OMA DM), keyed by its DeviceID everywhere in the store.

    Re-enrollment and renewal update this object in place (never replace it),
    so whatever else is keyed by the device id (its DM command queue, its
    sessions) stays attached. Every attribute has a class-level default, so
    attributes added later read sensibly on records pickled before them.
    """

    # enrollment facts, as the device reported them (AdditionalContext)
    hw_dev_id = ""
    device_name = ""
    os_version = ""
    os_edition = ""
    enrollment_type = ""
    device_type = ""
    application_version = ""
    #: every AdditionalContext item of the last enrollment, in wire order: ((name, value), ...)
    context: tuple[tuple[str, str], ...] = ()
    #: who enrolled it: a user name, or "certificate:<subject>" under the Certificate policy
    user = ""
    auth_policy = ""
    #: "User" or "System": the certificate store (My/User, My/System) holding its MDM certificate
    certificate_store = "User"

    # the certificate that currently identifies it
    cert_serial: int | None = None
    cert_not_after: float | None = None

    #: a L{mdmd.devices.lifecycle.DeviceStatus} value, only ever set by that module
    status = ""
    #: a L{mdmd.devices.accounts.DeviceKind} value: "windows" (enrolled by
    #: MS-MDE2; every record made before kinds existed is one) or "omadm" (a
    #: classic OMA DM device registered by an operator)
    kind = "windows"
    first_enrolled_at = 0.0
    enrolled_at = 0.0
    enrollment_count = 0
    renewed_at: float | None = None
    removed_at: float | None = None
    last_contact: float | None = None

    # The DM account: handed out in the provisioning document (w7 APPAUTH) to a
    # Windows device, set by an operator (or an OMA CP bootstrap) for a classic one.
    #: our server id for this device (w7 PROVIDER-ID / DMAcc ServerID, and the
    #: server id of its package #0); empty: the configured [enrollment] provider_id
    dm_server_id = ""
    #: whether its TLS connection must present a client certificate: "required",
    #: "optional", or "" for its kind's default
    client_certificate = ""
    #: the IMSI (digits) an OMA CP bootstrap is authenticated with (NETWPIN)
    imsi = ""
    # APPSRV: how the device authenticates to us.
    dm_client_name = ""
    dm_client_secret = ""
    dm_client_auth_type = "DIGEST"
    #: raw bytes of the nonce we expect the device to use next (APPSRV AAUTHDATA)
    dm_client_nonce = b""
    # CLIENT: how we authenticate to the device (and sign package #0).
    #: "DIGEST", "BASIC" or "HMAC" (w7 CLIENT AAUTHTYPE)
    dm_server_auth_type = "DIGEST"
    dm_server_name = ""
    dm_server_secret = ""
    #: raw bytes of the nonce the device expects from us next (CLIENT AAUTHDATA)
    dm_server_nonce = b""

    # What DM sessions reported (each replaced whole, never mutated in place).
    #: ./DevInfo values from the last package 1
    devinfo: dict[str, str] | None = None
    #: latest values of ./DevDetail and ./DevInfo nodes read with Get
    inventory: dict[str, str | None] | None = None
    #: the last LoginStatus alert: user, others or none
    login_status: str | None = None
    #: the most recent generic alerts (1226), oldest first
    alerts: tuple[dict[str, Any], ...] = ()
    #: the most recent answers to our SyncHdr other than an acceptance (an invalid
    #: status, a refusal of our credential, an error), oldest first
    header_events: tuple[dict[str, Any], ...] = ()
    #: its failed DM authentications lately, across sessions ({"count", "last",
    #: "locked_until"}: L{mdmd.dm.authentication.LoginFailures}); None: none
    dm_login_failures: dict[str, float] | None = None
    unenrolled_at: float | None = None
    #: (SessionID, time) of the last session that answered a notification (Alert 1200)
    last_server_initiated: tuple[str, float] | None = None

    #: the handset's number for push notifications, as an operator set it:
    #: digits with an optional leading "+" (see L{mdmd.notify.jobs.parse_msisdn})
    msisdn = ""
    #: its WNS push channel (DMClient Push: the PFN we set, ChannelURI and
    #: Status as last read, when WNS said it was gone), in the plain form of
    #: L{mdmd.notify.channels.Channel}; replaced whole, never mutated in place
    wns_channel: dict[str, Any] | None = None

    def __init__(self, device_id: str, created_at: float) -> None:
        self.device_id = device_id
        self.first_enrolled_at = created_at


class QueuedCommand(Persistent):
    """
    One operator command in a device's queue, and everything that became of it.

    C{spec} is the validated JSON form (see L{mdmd.dm.commands}); C{state} is
    queued → sent → done or failed (or cancelled before it was sent).
    """

    def __init__(self, seq: int, spec: dict[str, Any], scope: str, created_at: float) -> None:
        self.seq = seq
        self.spec = spec
        self.scope = scope
        self.created_at = created_at
        self.updated_at = created_at
        self.state = "queued"
        self.attempts = 0
        self.sent_in: tuple[str, str, str] | None = None  # (SessionID, MsgID, CmdID)
        self.status: int | None = None
        self.statuses: tuple[tuple[str, int], ...] = ()  # (command path, code) of every (sub)command
        self.results: tuple[dict[str, Any], ...] = ()
        self.error: str | None = None

    #: how it was answered, where that needs saying (a group the device
    #: answered member by member but not as a whole); None for most
    note: str | None = None


class CommandQueue(Persistent):
    """
    A device's commands, keyed by a per-device monotonic sequence number,
    and the index of those still pending (queued or sent), so a session's
    work does not grow with the device's history.
    """

    def __init__(self) -> None:
        self.next_seq = 1
        self.commands = IOBTree()
        self.pending = IITreeSet()


class DMSession(Persistent):
    """
    A device's current DM session: the engine's state as plain builtins.

    The whole dict is replaced after every message (one small write), so
    any node sharing the store can answer the next message of the session.
    C{last_answer} is our answer to its last message (plain builtins, see
    L{mdmd.dm.state.LastAnswer}), while the session can go on: a resend gets it again.
    """

    last_answer: dict[str, Any] | None = None
    #: the slot of its entry in C{session_deadlines} (L{mdmd.store.due}): at
    #: or before its deadline; None when it has none (or only one made for it
    #: when the index was built)
    due_slot: int | None = None

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state


class PushJob(Persistent):
    """
    One push for one device, and its fate: a wake-up notification (package
    #0 as WAP push SMS, or a WNS raw notification) or an OMA CP bootstrap
    (the device's DM account, by SMS).

    C{state}: queued (not every segment acknowledged by the SMSC yet) →
    submitted (all acknowledged, written to the spool, or accepted by WNS) →
    delivered (the SMSC's receipts say so) → answered (an SMS notification:
    the device opened the session carrying C{session_id}; a bootstrap or a
    WNS notification: the device authenticated a session begun after the job
    was submitted); or failed (refused, or a receipt said it was not
    delivered), or expired (not answered in time). C{segments} are what goes
    on the air, built once, so a resubmission sends the same octets. The
    attributes below have class-level defaults, so jobs pickled before them
    read as SMS notifications.
    """

    #: a L{mdmd.notify.jobs.PushKind} value; every job stored before kinds existed is a notification
    kind = "notification"
    #: how the job reaches the device: "sms" (C{segments} to C{destination})
    #: or "wns" (a raw notification to C{channel_uri}); C{via} names the carrier
    route = "sms"
    #: the device's WNS channel when the job was queued (route "wns")
    channel_uri = ""
    #: what the carrier said of the job besides its message ids, as (name,
    #: value) pairs (WNS: its X-WNS-Status and X-WNS-DeviceConnectionStatus)
    carrier: tuple[tuple[str, str], ...] = ()
    #: the seq of the device's job this one replaces (a WNS job whose channel was gone)
    fallback_of: int | None = None

    def __init__(
        self,
        device_id: str,
        seq: int,
        session_id: int | None,
        destination: tuple[str, int, int],
        segments: tuple[tuple[int, int, bytes], ...],
        created_at: float,
        expires_at: float,
        kind: str = "notification",
    ) -> None:
        self.device_id = device_id
        self.seq = seq
        self.kind = kind
        #: the package #0 session id; None for a bootstrap
        self.session_id = session_id
        self.destination = destination  # (address, TON, NPI)
        self.segments = segments  # (esm_class, data_coding, short_message)
        self.created_at = created_at
        self.updated_at = created_at
        self.expires_at = expires_at
        self.state = "queued"
        self.via: str | None = None  # "smpp", "spool" or "wns"
        self.spool_file: str | None = None
        self.message_ids: tuple[str | None, ...] = (None,) * len(segments)
        #: the canonical form of each message id (the key in C{push_messages})
        self.message_keys: tuple[str | None, ...] = (None,) * len(segments)
        #: the final receipt state name per segment (DELIVERED, UNDELIVERABLE, ...)
        self.receipts: tuple[str | None, ...] = (None,) * len(segments)
        self.attempts = 0
        self.error: str | None = None
        self.submitted_at: float | None = None
        self.delivered_at: float | None = None
        self.answered_at: float | None = None
        self.finished_at: float | None = None


class PushLog(Persistent):
    """
    A device's push jobs, keyed by a per-device monotonic sequence number.
    """

    def __init__(self) -> None:
        self.next_seq = 1
        self.jobs = IOBTree()


class IdempotentAnswer(Persistent):
    """
    The answer to an admin API request that carried an Idempotency-Key,
    kept so that the same request sent again is answered, not done, again.

    C{fingerprint} identifies the request (method, path, body: a SHA-256 in
    hex); C{body} is the JSON answer as sent.
    """

    def __init__(self, key: str, fingerprint: str, status: int, body: bytes, created_at: float, expires_at: float) -> None:
        self.key = key
        self.fingerprint = fingerprint
        self.status = status
        self.body = body
        self.created_at = created_at
        self.expires_at = expires_at


class StoreSchema(Persistent):
    """
    The root's layout version, and how far an upgrade to the next one got.

    A store made before versions were recorded gets one saying 1 (see
    L{ensure_root}); a new store starts at L{SCHEMA_VERSION}.
    """

    version = 1
    #: while an upgrade runs: (version being reached, pass index, pass
    #: started, last key done), committed with each batch so a restart resumes
    upgrading: tuple[int, int, bool, Any] | None = None


class Profile(Persistent):
    """
    A named, versioned set of SyncML commands that devices are to have
    (L{mdmd.desired}): its versions (each a L{ProfileVersion}, never changed
    once made) and the groups it is assigned to.

    A removed profile stays as a tombstone (C{removed_at} set, no groups) so
    that devices that had one of its versions can still be told how to undo
    it; adding the name again revives it with a newer version.
    """

    description = ""
    #: when it was removed (None: it is in use)
    removed_at: float | None = None

    def __init__(self, name: str, created_at: float) -> None:
        self.name = name
        self.created_at = created_at
        self.updated_at = created_at
        #: the number of the latest version (versions count from 1)
        self.latest = 0
        self.versions = IOBTree()
        #: the groups it is assigned to (replaced whole)
        self.groups: tuple[str, ...] = ()


class ProfileVersion(Persistent):
    """
    One version of a profile: its validated steps (plain JSON, variables
    unexpanded, see L{mdmd.desired.profiles.Step}) and the file they came from.
    """

    def __init__(self, version: int, steps: tuple[dict[str, Any], ...], source: str, created_at: float) -> None:
        self.version = version
        self.steps = steps
        self.source = source
        self.created_at = created_at


class DeviceGroup(Persistent):
    """
    A group of devices an operator made: static (members added and removed
    by name) or by rule (C{rule}: the canonical text of a
    L{mdmd.desired.rules.Rule}; members kept as devices are evaluated).
    The built-in groups (all, windows, omadm) have no record.
    """

    description = ""

    def __init__(self, name: str, created_at: float, rule: str = "") -> None:
        self.name = name
        self.created_at = created_at
        self.rule = rule
        self.members = OOTreeSet()


class DesiredState(Persistent):
    """
    What one device has of its profiles (L{mdmd.desired.reconciler}).

    C{profiles}: profile name → the engine's record as plain builtins
    (L{mdmd.desired.engine.Applied.as_dict}); C{inflight}: command sequence
    number → the ticket of a command of ours still in the device's queue.
    Both are replaced whole when they change.
    """

    #: the desired-state revision this device last reconciled against (-1: never, or its facts changed since)
    revision = -1
    #: when its verified values are read back next (None: nothing to verify)
    next_verify: float | None = None

    def __init__(self) -> None:
        self.profiles: dict[str, dict[str, Any]] = {}
        self.inflight: dict[int, tuple[Any, ...]] = {}


#: The containers under the ZODB root, created on first open. Keys of C{certs}
#: and C{revoked} are certificate serial numbers (int); of C{users}, the
#: case-folded user name; of C{devices}, the DeviceID as the device sent it;
#: of C{queues}, device ids (a L{CommandQueue} each, so devices never conflict
#: with each other); of C{sessions}, device ids (their current L{DMSession});
#: of C{pushes}, device ids (a L{PushLog} each). C{push_open} indexes the jobs
#: not yet answered, failed or expired by (device id, seq); C{push_messages}
#: maps an SMSC message id (canonical key) to its job's (device id, seq).
#: C{idempotency} maps an admin API Idempotency-Key to its L{IdempotentAnswer};
#: C{idempotency_expiry} indexes them by (expires_at, key).
#: C{counters} and C{members} hold L{mdmd.store.counters}' counts ((family,
#: value) → C{Length}) and member sets ((family, value) → set of keys: the
#: devices of each status and kind). C{cert_index} holds (device id, issued
#: at, serial) of every certificate, C{push_index} (created at, device id,
#: seq) of every push job kept: what operators' listings page through.
#:
#: Due indexes (L{mdmd.store.due}: entries (slot, *key), the slot a minute)
#: let the sweepers read only what is due: C{session_deadlines} (slot, device
#: id) files every session no later than its deadline; C{push_expiry}
#: (slot, device id, seq) the jobs by their expiry; C{push_finished} the
#: finished jobs by the time they finished. C{crl_revision} counts changes to
#: C{revoked} (a conflict-free counter: a CRL cached by any node is current
#: while it has not moved). C{upkeep} keeps facts about the store itself
#: (name → plain value: when it was last packed).
#: C{schema} is the L{StoreSchema}.
#:
#: Desired state (L{mdmd.desired}): C{profiles} (name → L{Profile}), C{groups}
#: (name → L{DeviceGroup}), C{assignments} (group name → the tuple of profile
#: names assigned to it, built-in groups included), C{desired} (device id →
#: L{DesiredState}), C{desired_index} ((profile, state, device id) of every
#: device × profile record), C{desired_revision} (a counter moved by every
#: change of what devices are to have), C{desired_counts} ((kind, ...) →
#: count, see L{mdmd.desired.tally}), C{device_actions} ((device id, command
#: seq) → the action a command carries out).
ROOT_CONTAINERS: dict[str, Callable[[], Any]] = {
    "users": OOBTree,
    "certs": OOBTree,
    "revoked": OOBTree,
    "devices": OOBTree,
    "queues": OOBTree,
    "sessions": OOBTree,
    "pushes": OOBTree,
    "push_open": OOBTree,
    "push_messages": OOBTree,
    "idempotency": OOBTree,
    "idempotency_expiry": OOTreeSet,
    "counters": OOBTree,
    "members": OOBTree,
    "cert_index": OOTreeSet,
    "push_index": OOTreeSet,
    "schema": StoreSchema,
    "session_deadlines": OOTreeSet,
    "push_expiry": OOTreeSet,
    "push_finished": OOTreeSet,
    "crl_revision": Length,
    "upkeep": OOBTree,
    "profiles": OOBTree,
    "groups": OOBTree,
    "assignments": OOBTree,
    "desired": OOBTree,
    "desired_index": OOTreeSet,
    "desired_revision": Length,
    "desired_counts": OOBTree,
    "device_actions": OOBTree,
}


def ensure_root(root: MutableMapping[str, Any]) -> bool:
    """
    Create any missing top-level container; return whether anything changed.

    A new store is at L{SCHEMA_VERSION}; one made before versions were
    recorded (it has containers, but no C{schema}) is at version 1.
    """
    fresh = not any(name in root for name in ROOT_CONTAINERS)
    changed = False
    for name, factory in ROOT_CONTAINERS.items():
        if name not in root:
            root[name] = factory()
            changed = True
    if fresh:
        root["schema"].version = SCHEMA_VERSION
    return changed
