"""
Tests for L{mdmd.notify.pkg0}.
"""

import base64
import hashlib

from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify.pkg0 import (
    DEFAULT_VERSION,
    Initiator,
    MalformedPackage0,
    UIMode,
    build_package0,
    compute_digest,
    parse_package0,
    session_id_text,
    session_ids_for,
)

from .samples import SERVER_ID, spec_example


class HeaderTests(SynchronousTestCase):
    def test_spec_example_header(self) -> None:
        """
        Version 11, background, client-initiated, session 0x1234 and the
        18-octet server id give the spec appendix's C{02 D0 00 00 00 12 34 12}.
        """
        pkg = spec_example(version=11)
        self.assertEqual(pkg[16:24], bytes.fromhex("02D0000000123412"))
        self.assertEqual(pkg[24:], SERVER_ID.encode())

    def test_defaults(self) -> None:
        """
        By default: version 11 (what DM 1.2 clients accept), background,
        server-initiated, no vendor part.
        """
        self.assertEqual(DEFAULT_VERSION, 11)
        pkg = build_package0(server_id="s", password="p", nonce=b"", session_id=1)
        self.assertEqual(pkg[16:24], bytes.fromhex("02D8000000000101"))
        self.assertEqual(len(pkg), 16 + 8 + 1)

    def test_version_is_a_parameter(self) -> None:
        """
        Version 12 (background, server) is C{0000001100 01 1 …} = C{03 18}.
        """
        pkg = build_package0(server_id="s", password="p", nonce=b"", session_id=1, version=12)
        self.assertEqual(pkg[16:18], bytes.fromhex("0318"))
        self.assertEqual(parse_package0(pkg).version, 12)

    def test_vendor_part_is_trailing(self) -> None:
        """
        The vendor-specific body follows the server identifier and is digested.
        """
        with_vendor = build_package0(
            server_id="s", password="p", nonce=b"n", session_id=9, vendor=b"\x01\x02"
        )
        without = build_package0(server_id="s", password="p", nonce=b"n", session_id=9)
        self.assertEqual(with_vendor[-2:], b"\x01\x02")
        self.assertNotEqual(with_vendor[:16], without[:16])
        self.assertEqual(parse_package0(with_vendor).vendor, b"\x01\x02")

    def test_bad_values_refused(self) -> None:
        """
        Session id 0, an 11-bit version and an empty server id cannot be sent.
        """
        for kwargs in (
            {"session_id": 0},
            {"session_id": 0x10000},
            {"session_id": 1, "version": 1024},
            {"session_id": 1, "server_id": ""},
            {"session_id": 1, "server_id": "x" * 256},
        ):
            args = {"server_id": "s", "password": "p", "nonce": b"", **kwargs}
            self.assertRaises(ValueError, build_package0, **args)


class DigestTests(SynchronousTestCase):
    def test_vector_computed_with_openssl(self) -> None:
        """
        A digest computed outside Python (openssl dgst -md5 and base64 in a
        shell) over the spec example trigger with password "srvpwd" and
        nonce "srvnonce".
        """
        self.assertEqual(spec_example()[:16].hex(), "2e84b4d47d65793a313fb4b5ffcbaac5")

    def test_formula_step_by_step(self) -> None:
        """
        The digest is H(B64(H(id:pw)):nonce:B64(H(trigger))), computed here
        with hashlib on binary nonce octets, independently of the module.
        """
        nonce = b"\x00\x10\xfe\xff"
        pkg = build_package0(server_id="srv", password="pw", nonce=nonce, session_id=0xBEEF)
        trigger = pkg[16:]
        b64 = lambda d: base64.b64encode(hashlib.md5(d).digest())  # noqa: E731
        expected = hashlib.md5(b64(b"srv:pw") + b":" + nonce + b":" + b64(trigger)).digest()
        self.assertEqual(pkg[:16], expected)
        self.assertEqual(compute_digest("srv", "pw", nonce, trigger), expected)

    def test_verify(self) -> None:
        """
        A parsed package verifies with the right credentials only.
        """
        pkg = parse_package0(
            build_package0(server_id="srv", password="pw", nonce=b"n1", session_id=5)
        )
        self.assertTrue(pkg.verify("pw", b"n1"))
        self.assertFalse(pkg.verify("pw", b"n2"))
        self.assertFalse(pkg.verify("other", b"n1"))


class ParseTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        Every header field comes back as built.
        """
        pkg = parse_package0(
            build_package0(
                server_id="MDM Server",
                password="pw",
                nonce=b"n",
                session_id=0xABC,
                ui_mode=UIMode.USER_INTERACTION,
                initiator=Initiator.SERVER,
                version=12,
            )
        )
        self.assertEqual(
            (pkg.version, pkg.ui_mode, pkg.initiator, pkg.session_id, pkg.server_id, pkg.vendor),
            (12, UIMode.USER_INTERACTION, Initiator.SERVER, 0xABC, "MDM Server", b""),
        )

    def test_malformed(self) -> None:
        """
        Short input, reserved bits set or a server id past the end are refused.
        """
        good = build_package0(server_id="srv", password="pw", nonce=b"n", session_id=5)
        self.assertRaises(MalformedPackage0, parse_package0, good[:23])
        reserved = bytearray(good)
        reserved[19] |= 0x01
        self.assertRaises(MalformedPackage0, parse_package0, bytes(reserved))
        self.assertRaises(MalformedPackage0, parse_package0, good[:-1])


class SessionIdTextTests(SynchronousTestCase):
    def test_upper_hex_without_leading_zeros(self) -> None:
        """
        0x1234 → "1234", 0x000D → "D", 0xBEEF → "BEEF", 0x00A0 → "A0".
        """
        self.assertEqual(
            [session_id_text(n) for n in (0x1234, 0x000D, 0xBEEF, 0x00A0, 1)],
            ["1234", "D", "BEEF", "A0", "1"],
        )

    def test_out_of_range(self) -> None:
        """
        0 and values above 16 bits have no SessionID form.
        """
        self.assertRaises(ValueError, session_id_text, 0)
        self.assertRaises(ValueError, session_id_text, 0x10000)


class CredentialNameTests(SynchronousTestCase):
    def test_name_other_than_the_server_id(self) -> None:
        """
        The digest may be made with a credential name other than the server id the
        package names (libdmclient hashes its SRVCRED AAuthName); verify() takes it.
        """
        pkg = parse_package0(
            build_package0(server_id="acme-dm", name="srvcred", password="pw", nonce=b"n", session_id=9)
        )
        self.assertEqual(pkg.server_id, "acme-dm")
        self.assertTrue(pkg.verify("pw", b"n", name="srvcred"))
        self.assertFalse(pkg.verify("pw", b"n"))
        same = parse_package0(build_package0(server_id="acme-dm", password="pw", nonce=b"n", session_id=9))
        self.assertTrue(same.verify("pw", b"n"))

    def test_accepted_by_a_real_client(self) -> None:
        """
        The octets of a package #0 that (patched) libdmclient accepted, opening session
        1234 with Alert 1200: server id and SRVCRED name mdmd, secret serverpwd, its
        server nonce the 12 ASCII octets /TAZHjDMlhY=; and its default-nonce retry vector.
        """
        self.assertEqual(
            build_package0(
                server_id="mdmd", password="serverpwd", nonce=b"/TAZHjDMlhY=", session_id=0x1234,
                ui_mode=UIMode.NOT_SPECIFIED,
            ).hex(),
            "1a299befe7b02dfef362a5d3910b42fc02c80000001234046d646d64",
        )
        self.assertEqual(
            build_package0(
                server_id="mdmd", password="serverpwd", nonce=b"0x00000000", session_id=0xAB,
                ui_mode=UIMode.NOT_SPECIFIED,
            ).hex(),
            "79ed8ae79c7c240e223d655f6993d0ab02c800000000ab046d646d64",
        )


class SessionIdsForTests(SynchronousTestCase):
    def test_readings(self) -> None:
        """
        A SessionID is read as hex in either case, then as decimal; nothing for what is neither.
        """
        cases = {
            "1234": (0x1234, 1234),
            "BEEF": (0xBEEF,),
            "beef": (0xBEEF,),
            "0d": (0xD,),
            " D ": (0xD,),
            "13": (0x13, 13),
            "7": (7,),
            "12345": (12345,),  # too large in hex
            "0": (),
            "": (),
            "0x12": (),
            "1_2": (),
            "+12": (),
            "12g": (),
            "٣": (),
            "00001234": (0x1234, 1234),
            "9" * 5000: (),  # a device's SessionID, from the DM engine's fuzzing (issue 12)
        }
        for text, expected in cases.items():
            self.assertEqual(session_ids_for(text), expected, text)

    def test_every_session_id_round_trips(self) -> None:
        """
        Whatever the id, its upper-case, lower-case and (where it is also a decimal
        reading) decimal forms all lead back to it.
        """
        for n in (1, 9, 0xA, 0x10, 0x99, 0x1234, 0xBEEF, 0xFFFF):
            self.assertEqual(session_ids_for(session_id_text(n))[0], n)
            self.assertEqual(session_ids_for(session_id_text(n).lower())[0], n)
            self.assertIn(n, session_ids_for(str(n)))
