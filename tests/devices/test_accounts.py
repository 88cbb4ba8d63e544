"""
Tests for L{mdmd.devices.accounts}: parsing what an operator gives, completing
and editing accounts, and keeping them in a record as plain values.
"""

from __future__ import annotations

import base64

from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices import accounts
from mdmd.devices.accounts import (
    AccountFields,
    ClientCertificate,
    DeviceAccount,
    DeviceKind,
    InvalidAccount,
)
from mdmd.dm.authentication import AuthScheme, Credentials
from mdmd.errors import PeerError
from mdmd.store.models import Device
from mdmd.testing.randomness import fixed_random

NONCE = base64.b64encode(b"\x07" * 16).decode()


def account(**changes: object) -> DeviceAccount:
    """
    A complete account with fixed values.
    """
    fields = accounts.parse_fields(
        {"client_secret": "device-secret", "server_secret": "server-secret", "client_nonce": NONCE,
         "server_nonce": NONCE, **changes}
    )
    return accounts.complete(fields, "IMEI:490154203237518", "mdmd", fixed_random())[0]


class ParseTests(SynchronousTestCase):
    def test_every_field(self) -> None:
        """
        Every field is read in its operator's spelling into its type: schemes
        case-insensitively, nonces from base64 to octets, the MSISDN normalised.
        """
        fields = accounts.parse_fields(
            {
                "server_id": "dm.example.com",
                "client_auth": "BASIC",
                "client_name": "dev-1",
                "client_secret": "s3cret",
                "client_nonce": NONCE,
                "server_auth": "hmac",
                "server_name": "mdm",
                "server_secret": "other",
                "server_nonce": base64.b64encode(b"abc").decode(),
                "msisdn": "+49 170 1234567",
                "imsi": "262011234567890",
                "client_certificate": "Optional",
            }
        )
        self.assertEqual(
            fields,
            AccountFields(
                server_id="dm.example.com",
                client_auth=AuthScheme.BASIC,
                client_name="dev-1",
                client_secret="s3cret",
                client_nonce=b"\x07" * 16,
                server_auth=AuthScheme.HMAC,
                server_name="mdm",
                server_secret="other",
                server_nonce=b"abc",
                msisdn="+491701234567",
                imsi="262011234567890",
                client_certificate=ClientCertificate.OPTIONAL,
            ),
        )

    def test_every_problem_at_once(self) -> None:
        """
        Every bad field is named in one error (a PeerError: 400), and a
        secret's value is never repeated in it.
        """
        with self.assertRaises(InvalidAccount) as caught:
            accounts.parse_fields(
                {
                    "client_auth": "md5",
                    "client_secret": "tab\tq7xk",
                    "server_secret": " zq9w",
                    "client_nonce": "not base64!",
                    "server_nonce": base64.b64encode(b"x" * 65).decode(),
                    "msisdn": "call me",
                    "imsi": "12",
                    "client_certificate": "sometimes",
                    "server_id": "a/b",
                    "colour": "blue",
                    "client_name": 7,
                }
            )
        error = caught.exception
        self.assertIsInstance(error, PeerError)
        self.assertEqual(error.http_status, 400)
        self.assertEqual(
            [p.split(":")[0] for p in error.problems],
            ["unknown field 'colour' (fields", "server_id", "client_auth", "client_name", "client_secret",
             "client_nonce", "server_secret", "server_nonce", "msisdn", "imsi", "client_certificate"],
        )
        self.assertIn("client_auth: expected one of basic, digest, hmac, got 'md5'", error.problems)
        self.assertIn("client_name: must be a string or null", error.problems)
        self.assertIn("client_secret: must not contain control characters", error.problems)
        self.assertIn("server_secret: must not start or end with blanks", error.problems)
        self.assertIn("server_nonce: at most 64 octets", error.problems)
        self.assertNotIn("q7xk", str(error))
        self.assertNotIn("zq9w", str(error))
        self.assertEqual(str(error), "; ".join(error.problems))

    def test_empty_values(self) -> None:
        """
        For a new account an empty value is not given (an empty CSV cell); for
        an edit it clears what may be cleared and is refused elsewhere.
        """
        self.assertEqual(accounts.parse_fields({"msisdn": "", "client_name": "  ", "imsi": None}), AccountFields())
        self.assertEqual(
            accounts.parse_fields({"msisdn": "", "server_id": "", "client_certificate": "", "imsi": ""}, clearing=True),
            AccountFields(server_id="", msisdn="", imsi="", client_certificate=ClientCertificate.DEFAULT),
        )
        with self.assertRaises(InvalidAccount) as caught:
            accounts.parse_fields({"client_name": "", "client_nonce": ""}, clearing=True)
        self.assertEqual(caught.exception.problems, ("client_name: must not be empty", "client_nonce: must not be empty"))


class CompleteTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        Not given: digest both ways, the client named after the device, the
        server after the server id, strong generated secrets (reported as
        generated) and fresh 16-octet nonces.
        """
        made, generated = accounts.complete(AccountFields(), "DEV-1", "mdmd", fixed_random(1, 2, 3, 4))
        self.assertEqual(generated, ("client_secret", "server_secret"))
        self.assertEqual((made.server_id, made.client_auth, made.server_auth), ("", AuthScheme.DIGEST, AuthScheme.DIGEST))
        self.assertEqual((made.client.name, made.server.name), ("DEV-1", "mdmd"))
        self.assertEqual(made.client.secret, base64.urlsafe_b64encode((1).to_bytes(24, "big")).decode())
        self.assertEqual(len(made.client.secret), 32)
        self.assertEqual((made.client.nonce, made.server.nonce), ((2).to_bytes(16, "big"), (4).to_bytes(16, "big")))
        self.assertEqual(made.client_certificate, ClientCertificate.DEFAULT)

    def test_server_name_follows_the_server_id(self) -> None:
        """
        A device with its own server id names our credential after it; given secrets are not generated.
        """
        fields = accounts.parse_fields({"server_id": "acme-dm", "client_secret": "c", "server_secret": "s"})
        made, generated = accounts.complete(fields, "DEV-1", "mdmd", fixed_random())
        self.assertEqual((made.server_id, made.server.name, generated), ("acme-dm", "acme-dm", ()))

    def test_names_suit_their_scheme(self) -> None:
        """
        A Basic credential's name cannot hold ':' (name:secret), an HMAC one's
        cannot hold '"' (its header quotes it); digest takes both.
        """
        with self.assertRaises(InvalidAccount) as caught:
            account(client_auth="basic", client_name="a:b", server_auth="hmac", server_name='say "hi"')
        self.assertEqual(
            caught.exception.problems,
            ("client_name: a Basic credential's name cannot contain ':'",
             "server_name: an HMAC credential's name cannot contain '\"'"),
        )
        self.assertEqual(account(client_name='a:"b"').client.name, 'a:"b"')

    def test_edited(self) -> None:
        """
        An edit replaces what it gives and keeps the rest; clearing returns to the defaults.
        """
        before = account(msisdn="+491701234567", client_certificate="required", server_id="x")
        after = accounts.edited(
            before,
            accounts.parse_fields(
                {"client_name": "renamed", "server_secret": "new", "msisdn": "", "client_certificate": "", "server_id": ""},
                clearing=True,
            ),
        )
        self.assertEqual(after.client, Credentials("renamed", before.client.secret, before.client.nonce))
        self.assertEqual(after.server, Credentials(before.server.name, "new", before.server.nonce))
        self.assertEqual((after.msisdn, after.client_certificate, after.server_id), ("", ClientCertificate.DEFAULT, ""))
        with self.assertRaises(InvalidAccount):
            accounts.edited(after, accounts.parse_fields({"client_auth": "basic", "client_name": "a:b"}))


class StoreTests(SynchronousTestCase):
    def test_round_trip_as_plain_values(self) -> None:
        """
        A record keeps the account as plain builtins (schemes by their w7
        names, nonces as octets) and gives the same account back.
        """
        device = Device("IMEI:490154203237518", 0.0)
        made = account(client_auth="hmac", msisdn="+491701234567", imsi="262011234567890", client_certificate="optional")
        accounts.store_account(device, made)
        self.assertEqual(
            (device.dm_client_auth_type, device.dm_server_auth_type, device.dm_client_nonce, device.client_certificate),
            ("HMAC", "DIGEST", b"\x07" * 16, "optional"),
        )
        self.assertEqual(accounts.account_of(device), made)

    def test_records_before_accounts(self) -> None:
        """
        A record made before accounts existed reads as a digest account with the kind's certificate rule.
        """
        old = accounts.account_of(Device("OLD", 0.0))
        self.assertEqual((old.client_auth, old.server_auth, old.client_certificate), (AuthScheme.DIGEST, AuthScheme.DIGEST, ClientCertificate.DEFAULT))

    def test_public_json(self) -> None:
        """
        Operators see every field but the secrets, which are only "set" or
        "not set"; nonces are base64; the import row spells everything, and
        reads back as the same account.
        """
        made = account(msisdn="+491701234567")
        shown = accounts.public_json(made)
        self.assertEqual(set(shown), set(accounts.FIELDS))
        self.assertEqual((shown["client_secret"], shown["server_secret"]), ("set", "set"))
        self.assertEqual((shown["client_nonce"], shown["client_auth"], shown["client_certificate"]), (NONCE, "digest", "default"))
        self.assertNotIn("device-secret", repr(shown))
        self.assertEqual(accounts.public_json(accounts.account_of(Device("X", 0.0)))["client_secret"], "not set")
        row = accounts.as_row(made)
        self.assertEqual((row["client_secret"], row["server_secret"], row["client_certificate"]), ("device-secret", "server-secret", ""))
        self.assertEqual(accounts.complete(accounts.parse_fields(row), "ANY", "other", fixed_random())[0], made)

    def test_certificate_requirement(self) -> None:
        """
        A device's own setting comes first, then its kind's default.
        """
        defaults = {DeviceKind.WINDOWS: True, DeviceKind.OMADM: False}
        self.assertTrue(accounts.requires_certificate("", "windows", defaults))
        self.assertFalse(accounts.requires_certificate("", "omadm", defaults))
        self.assertTrue(accounts.requires_certificate("required", "omadm", defaults))
        self.assertFalse(accounts.requires_certificate("optional", "windows", defaults))
        self.assertFalse(accounts.requires_certificate("default", "omadm", defaults))
