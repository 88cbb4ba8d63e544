"""
A large population of enrolled Windows devices, made through mdmd's own units of work, for benchmarks.

A L{Population} derives everything about device number C{i} from a seed:
its DeviceID, certificate serial, DM secrets and the DM tree its emulator
holds; its key is one of a few RSA keys made once (C{i % len(keys)}). Its
certificate is what our CA issues for that key, id and serial at the
population's issue time: RSA PKCS#1 v1.5 signatures are deterministic, so a
benchmark rebuilds the very certificate the store recorded (L{certificate})
and presents it over TLS.

L{add_devices} is the unit of work that puts a batch of them in the store
the way a real device gets there: the enrollment's unit of work
(L{mdmd.enroll.devices.enroll} with the inventory Gets queued, as
C{EnrollmentService} runs it), then its first DM session, which answers the
six inventory Gets, then two operator commands queued for the next
session. What the emulator holds after that session (the nonce the server
gave it for the next one) is returned, for the benchmark to go on from: the
files of L{PopulationFiles} keep it between runs.

The first session is either run for real (C{real_sessions}: the device's
emulator, L{DMClient}, talks to L{mdmd.dm.checkin.exchange} through the XML
codec, two messages) or replayed (the default, four times faster): the
effects the engine hands the check-in for that session (new session, next
nonce, login status, DevInfo, the Gets sent, then answered with their
results) applied by the check-in's own handlers
(L{mdmd.dm.checkin.apply_effects}), the contact recorded, and the ended
session's state saved. Both leave the same records
(C{tests/testing/test_population.py} compares them); what the replay skips
is encoding, decoding and deciding what the session engine already decides
the same way for every device.

The files, in the daemon's state directory::

    population.json          the manifest: seed, size, issue time, key count
    population-keys.pem      the device keys
    population-devices.bin   per device: the client nonce it uses next (16 bytes)
                             and how many benchmark sessions it has run (1 byte)
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from collections.abc import Callable, Coroutine, Iterable, MutableMapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mdmd.devices import lifecycle
from mdmd.dm import queue as dm_queue
from mdmd.dm.checkin import DMSettings, apply_effects, exchange
from mdmd.dm.commands import parse_spec
from mdmd.dm.effects import ClientNonce, CommandAnswered, CommandSent, DevInfoReported, LoginStatus, NewSession
from mdmd.dm.state import Authentication, Phase, SessionState
from mdmd.enroll import devices
from mdmd.enroll.provisioning import NONCE_BYTES, DMCredentials, certificate_store
from mdmd.pki import registry
from mdmd.pki.authority import IssuedClientCertificate
from mdmd.pki.ca import CertificateAuthority, PublicKey
from mdmd.store.models import DMSession
from mdmd.syncml.codec import XML_CODEC, codec_for_content_type
from mdmd.syncml.model import Replace, data_text
from mdmd.testing.dmclient import DMClient, Post

__all__ = [
    "Population",
    "PopulationFiles",
    "DeviceRecord",
    "INVENTORY",
    "NEXT_COMMANDS",
    "USER",
    "add_devices",
    "replay_first_session",
    "in_process_post",
    "run_sync",
]

T = TypeVar("T")
Root = MutableMapping[str, Any]

#: Who enrolled every device of a population.
USER = "fleet@example.com"
#: The inventory an enrollment queues (the default of [dm] inventory_windows),
#: and the value each node has on the emulated devices.
INVENTORY: tuple[tuple[str, str], ...] = (
    ("./DevDetail/SwV", "10.0.26100.2314"),
    ("./DevDetail/OEM", "Contoso"),
    ("./DevDetail/DevTyp", "Virtual Machine"),
    ("./DevDetail/FwV", "Hyper-V UEFI Release v4.1"),
    ("./DevDetail/HwV", "Hyper-V UEFI Release v4.1"),
    ("./DevDetail/Ext/Microsoft/OSPlatform", "Windows 11 Enterprise"),
)
#: What an operator queued for every device after its first session: one
#: policy set and one read, answered in the device's next session.
NEXT_COMMANDS: tuple[dict[str, str], ...] = (
    {"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/Update/ActiveHoursStart", "data": "7", "format": "int"},
    {"verb": "Get", "target": "./DevDetail/SwV"},
)


def _derive(seed: str, purpose: str, index: int, size: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{purpose}:{index}".encode(), digest_size=size).digest()


@dataclass(frozen=True)
class Population:
    """
    The recipe of a population: what device C{i} is, from the seed alone.
    """

    seed: str
    size: int
    #: POSIX time every certificate was issued at (and the devices enrolled)
    issued_at: float
    #: how many device keys the population shares
    keys: int = 16
    #: the client certificate's lifetime (the [ca] default)
    lifetime_days: int = 365

    def _spread(self, purpose: str, index: int, bits: int) -> int:
        """
        A number of C{bits} bits that looks random, in the C{index}-th of
        C{size} equal slots of the range: uniform over it like a random key,
        yet increasing with the index, so that batches of devices append to
        the BTrees instead of rewriting a bucket per device (at a million
        devices, random keys made every commit rewrite four buckets per
        device: 7 KB of garbage each, and most of the commit's time).
        """
        slot = (1 << bits) // self.size
        return index * slot + int.from_bytes(_derive(self.seed, purpose, index, bits // 8 + 8), "big") % slot

    def device_id(self, index: int) -> str:
        """
        A DeviceID shaped as Windows sends it (32 upper-case hex digits), spread over the key space.
        """
        return format(self._spread("device", index, 128), "032X")

    def serial(self, index: int) -> int:
        """
        The certificate serial: positive, below 2**159, as x509.random_serial_number makes them.
        """
        return (1 << 158) + self._spread("serial", index, 158)

    def credentials(self, index: int, server_name: str, auth_type: str = "DIGEST") -> DMCredentials:
        """
        The DM credentials the enrollment gives device C{index} (the nonces are the first session's).
        """
        return DMCredentials(
            client_name=self.device_id(index),
            client_secret=base64.urlsafe_b64encode(_derive(self.seed, "client-secret", index, 24)).decode("ascii"),
            client_auth_type=auth_type,
            client_nonce=_derive(self.seed, "client-nonce", index, NONCE_BYTES),
            server_name=server_name,
            server_secret=base64.urlsafe_b64encode(_derive(self.seed, "server-secret", index, 24)).decode("ascii"),
            server_nonce=_derive(self.seed, "server-nonce", index, NONCE_BYTES),
        )

    def context(self, index: int) -> tuple[tuple[str, str], ...]:
        """
        The AdditionalContext of its enrollment (what the Windows emulator sends).
        """
        device_id = self.device_id(index)
        return (
            ("UXInitiated", "true"),
            ("HWDevID", hashlib.sha256(device_id.encode()).hexdigest().upper()),
            ("Locale", "en-US"),
            ("TargetedUserLoggedIn", "true"),
            ("OSEdition", "48"),
            ("DeviceName", f"DESKTOP-{device_id[:7]}"),
            ("MAC", "00:15:5D:01:02:03"),
            ("DeviceID", device_id),
            ("EnrollmentType", "Full"),
            ("DeviceType", "CIMClient_Windows"),
            ("OSVersion", "10.0.26100.1"),
            ("ApplicationVersion", "10.0.26100.1"),
            ("NotInOobe", "false"),
            ("RequestVersion", "9.0"),
        )

    @property
    def issued(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.issued_at, datetime.timezone.utc)

    def certificate(self, index: int, authority: CertificateAuthority, public_key: PublicKey) -> x509.Certificate:
        """
        The client certificate our CA issued device C{index} (the same bytes every time).
        """
        return authority.issue_client(
            public_key,
            self.device_id(index),
            datetime.timedelta(days=self.lifetime_days),
            self.issued,
            serial=self.serial(index),
        )

    def next_nonce(self, index: int) -> bytes:
        """
        The nonce a replayed first session gives device C{index} for its next one.
        """
        return _derive(self.seed, "next-nonce", index, NONCE_BYTES)

    def dm_client(self, index: int, server_url: str, nonce: bytes, server_name: str, encoding: str = "") -> DMClient:
        """
        The emulated device's DM side, holding the nonce it uses next.
        """
        credentials = self.credentials(index, server_name)
        client = DMClient(
            device_id=self.device_id(index),
            server_url=server_url,
            client_name=credentials.client_name,
            client_secret=credentials.client_secret,
            client_nonce=nonce,
            codec=codec_for_content_type(encoding) or XML_CODEC,
        )
        client.tree.update(INVENTORY)
        return client


@dataclass
class DeviceRecord:
    """
    What the emulator of one device keeps between sessions.
    """

    nonce: bytes
    sessions: int = 0


_RECORD = NONCE_BYTES + 1


class PopulationFiles:
    """
    A population's files in a state directory (see the module's docstring).
    """

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.manifest_path = os.path.join(state_dir, "population.json")
        self.keys_path = os.path.join(state_dir, "population-keys.pem")
        self.devices_path = os.path.join(state_dir, "population-devices.bin")

    def exists(self) -> bool:
        return os.path.exists(self.manifest_path)

    def create(self, population: Population, keys: Sequence[rsa.RSAPrivateKey]) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        with open(self.keys_path, "wb") as f:
            for key in keys:
                f.write(
                    key.private_bytes(
                        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    )
                )
        with open(self.devices_path, "wb") as f:
            f.truncate(population.size * _RECORD)
        with open(self.manifest_path, "w") as f:
            json.dump(asdict(population), f, indent=1)

    def population(self) -> Population:
        with open(self.manifest_path) as f:
            return Population(**json.load(f))

    def keys(self) -> list[rsa.RSAPrivateKey]:
        with open(self.keys_path, "rb") as f:
            blocks = f.read().split(b"-----END PRIVATE KEY-----")
        keys = []
        for block in blocks:
            if block.strip():
                key = serialization.load_pem_private_key(block + b"-----END PRIVATE KEY-----\n", None)
                assert isinstance(key, rsa.RSAPrivateKey)
                keys.append(key)
        return keys

    def read(self, indices: Iterable[int]) -> dict[int, DeviceRecord]:
        found = {}
        with open(self.devices_path, "rb") as f:
            for index in indices:
                f.seek(index * _RECORD)
                raw = f.read(_RECORD)
                found[index] = DeviceRecord(raw[:NONCE_BYTES], raw[NONCE_BYTES])
        return found

    def write(self, records: dict[int, DeviceRecord]) -> None:
        with open(self.devices_path, "r+b") as f:
            for index in sorted(records):
                record = records[index]
                f.seek(index * _RECORD)
                f.write(record.nonce + bytes([min(record.sessions, 255)]))


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """
    Run a coroutine that never waits on anything (an emulator talking to
    the unit of work in-process) to its end.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("the coroutine waited on something")


def in_process_post(
    root: Root, certificate: x509.Certificate, now: float, settings: DMSettings, random: Callable[[int], bytes]
) -> Post:
    """
    POST a DM message to the check-in's unit of work, in the caller's transaction.
    """

    async def post(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        codec = codec_for_content_type(content_type)
        assert codec is not None
        result = exchange(root, certificate, codec.decode(body), codec, body, None, now, settings, random)
        return 200, {"content-type": codec.content_type}, result.body

    return post


def replay_first_session(
    root: Root, client: DMClient, nonce: bytes, now: float, timeout: float, session_id: str = "1"
) -> None:
    """
    What the device's first DM session leaves in the store, without running
    it: its effects applied by the check-in's handlers (see the module).

    The session: package 1 (Alert 1201, LoginStatus, the DevInfo Replace)
    accepted with a new nonce and answered with every pending command (the
    inventory Gets, CmdIDs after the four statuses), then the device's
    statuses and results for all of them, and the session's end.
    """
    device_id = client.device_id
    device = root["devices"][device_id]
    queue = dm_queue.queue_of(root, device_id)
    state = SessionState.start(session_id, now, timeout)
    (devinfo,) = [c for c in client.package1(session_id, 1).body if isinstance(c, Replace)]
    pending = list(dm_queue.pending_commands(queue))
    lifecycle.record_contact(device, now)
    apply_effects(
        root,
        device,
        queue,
        (
            NewSession(state.key, session_id),
            ClientNonce(nonce),
            LoginStatus(client.login_status),
            DevInfoReported(
                tuple((item.source.loc_uri if item.source else "", data_text(item.data) or "") for item in devinfo.items)
            ),
            *(CommandSent(command.seq, state.key, "1", str(cmd_id)) for cmd_id, command in enumerate(pending, 5)),
        ),
        now,
        session_id,
    )
    answers = []
    for command in pending:
        (uri,) = [item["target"] for item in command.spec["items"]]
        result = {"source": uri, "format": "chr", "type": None, "data": client.tree[uri]}
        answers.append(CommandAnswered(command.seq, "done", 200, (("", 200),), (result,)))
    apply_effects(root, device, queue, answers, now, session_id)
    ended = state.evolve(
        phase=Phase.ENDED,
        authentication=Authentication.CREDENTIAL,
        next_msg_id=3,
        deadline=now + timeout,
        last_client_msg_id="2",
        user_logged_in=client.login_status == "user",
    )
    root["sessions"][device_id] = DMSession(ended.to_dict())


def add_devices(
    root: Root,
    population: Population,
    certificates: Sequence[tuple[int, bytes]],
    server_url: str,
    server_name: str,
    dm: DMSettings,
    inventory: Sequence[str],
    random: Callable[[int], bytes] = os.urandom,
    real_sessions: bool = False,
) -> dict[int, bytes]:
    """
    A unit of work: enroll the devices C{(index, certificate DER)}, run (or
    replay) each one's first DM session, queue its next commands; return the
    nonce each device's emulator holds for its next session, by index.
    """
    next_commands = [parse_spec(spec) for spec in NEXT_COMMANDS]
    # what the enrollment queues: each node read with a Get (parsed once for the batch)
    reads = [parse_spec({"verb": "Get", "target": uri}) for uri in inventory]
    nonces = {}
    for index, der in certificates:
        now = population.issued_at + index * 1e-6
        certificate = x509.load_der_x509_certificate(der)
        device_id = population.device_id(index)
        credentials = population.credentials(index, server_name)

        def issue(public_key: PublicKey, issued_for: str, certificate: x509.Certificate = certificate) -> IssuedClientCertificate:
            return IssuedClientCertificate(certificate, registry.record_issued(root, certificate, issued_for, now))

        context = population.context(index)
        facts = devices.EnrollmentFacts(
            device_id=device_id,
            user=USER,
            auth_policy="OnPremise",
            certificate_store=certificate_store("Full"),
            context=context,
        )
        public_key = certificate.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        devices.enroll(root, issue, facts, public_key, credentials, now)
        for spec in reads:
            dm_queue.enqueue(root, [device_id], spec, now)
        client = population.dm_client(index, server_url, credentials.client_nonce, server_name)
        if real_sessions:
            run_sync(client.session(in_process_post(root, certificate, now + 1.0, dm, random)))
        else:
            client.client_nonce = population.next_nonce(index)
            replay_first_session(root, client, client.client_nonce, now + 1.0, dm.session.session_timeout)
        for spec in next_commands:
            dm_queue.enqueue(root, [device_id], spec, now + 2.0)
        nonces[index] = client.client_nonce
    return nonces
