"""
Tests for L{mdmd.settings}: the configuration in the types its consumers take.
"""

import dataclasses
import datetime
import os

from twisted.trial.unittest import SynchronousTestCase

from mdmd import settings
from mdmd.config import ConfigErrors, ListenAddress
from mdmd.devices.accounts import DeviceKind
from mdmd.enroll.throttle import GuessLimits
from mdmd.enroll.users import PasswordLimits
from mdmd.listeners import ConnectionLimits
from mdmd.notify.pkg0 import UIMode
from mdmd.notify.smpp_pdu import MessageIdBase
from mdmd.notify.smpp_session import Address, BindType
from mdmd.store.upkeep import UpkeepSettings
from mdmd.pki.ca import certificate_pem, generate_rsa_key

from .pki.helpers import DevicePKI


class SettingsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)

    def load(self, text: str = "") -> settings.Settings:
        path = os.path.join(self.base, "mdmd.conf")
        with open(path, "w") as f:
            f.write(text)
        return settings.load(path, base_dir=self.base)


class DefaultsTests(SettingsTestCase):
    def test_paths_resolved(self) -> None:
        """
        Every file the daemon and mdmctl use is an absolute path in state_dir
        unless configured: store, listening file, admin token, manhole
        passwords, spool.
        """
        loaded = settings.load(None, base_dir=self.base)
        state = os.path.join(self.base, "var")
        self.assertEqual(loaded.server.state_dir, state)
        self.assertEqual(loaded.server.listening_file, os.path.join(state, "listening.json"))
        self.assertEqual(loaded.store.uri, "file://" + os.path.join(state, "Data.fs"))
        self.assertEqual(loaded.admin.listen, ListenAddress("unix", path=os.path.join(state, "admin.sock")))
        self.assertEqual(loaded.admin.token_file, os.path.join(state, "admin.token"))
        self.assertEqual(loaded.manhole.password_file, os.path.join(state, "manhole.passwd"))
        self.assertEqual(loaded.push.spool_dir, os.path.join(state, "spool"))
        self.assertEqual((loaded.ca.state_dir, loaded.enrollment.state_dir), (state, state))

    def test_no_smsc(self) -> None:
        """
        Without [smpp] host there are no SMSC settings: pushes are spooled.
        """
        self.assertIsNone(settings.load(None, base_dir=self.base).smpp)

    def test_frozen(self) -> None:
        """
        Settings cannot be changed once made.
        """
        loaded = settings.load(None, base_dir=self.base)
        with self.assertRaises(dataclasses.FrozenInstanceError):
            loaded.server.hostname = "other"  # type: ignore[misc]  # the assignment under test


class TypedValuesTests(SettingsTestCase):
    def test_server_and_ca(self) -> None:
        """
        The certificate names are the host name then the extra names;
        lifetimes are timedeltas; the operator's certificate files are the CA's.
        """
        cert, key = os.path.join(self.base, "c.pem"), os.path.join(self.base, "k.pem")
        for path in (cert, key):
            open(path, "w").close()
        loaded = self.load(
            "[server]\nhostname = mdm.example.com\nextra_hostnames = a.example, 10.0.0.1\n"
            "[https]\ncert_file = c.pem\nkey_file = k.pem\n"
            "[ca]\nroot_lifetime_days = 100\nclient_cert_lifetime_days = 90\ncrl_lifetime_hours = 12\n"
            "[enrollment]\nrenewal_period_days = 30\n"
        )
        self.assertEqual(loaded.server.hostnames, ("mdm.example.com", "a.example", "10.0.0.1"))
        self.assertEqual(loaded.ca.hostnames, loaded.server.hostnames)
        self.assertEqual(loaded.ca.root_lifetime, datetime.timedelta(days=100))
        self.assertEqual(loaded.ca.client_lifetime, datetime.timedelta(days=90))
        self.assertEqual(loaded.ca.crl_lifetime, datetime.timedelta(hours=12))
        self.assertEqual((loaded.ca.server_cert_file, loaded.ca.server_key_file), (cert, key))

    def test_seconds_are_floats(self) -> None:
        """
        Durations configured as whole seconds reach their consumers as floats.
        """
        loaded = self.load(
            "[https]\nidle_timeout = 5\n[dm]\nsession_timeout = 600\n"
            "[enrollment]\nfederated_token_lifetime = 120\n"
            "[push]\nexpiry = 3600\nretry_delay = 7\nkeep_days = 2\n"
        )
        values = (
            loaded.https.idle_timeout,
            loaded.dm.session.session_timeout,
            loaded.enrollment.federated_token_lifetime,
            loaded.push.jobs.expiry,
            loaded.push.retry_delay,
            loaded.push.keep_seconds,
        )
        self.assertEqual(values, (5.0, 600.0, 120.0, 3600.0, 7.0, 2 * 86400.0))
        self.assertEqual({type(value) for value in values}, {float})

    def test_push(self) -> None:
        """
        [push] becomes the jobs' settings: the UI mode an enum, the octets integers.
        """
        loaded = self.load(
            "[push]\nversion = 12\nui_mode = user-interaction\ndata_coding = 245\nconcat_iei = 0x8\n"
            "local_ton = 2\nlocal_npi = 0\n"
        )
        jobs = loaded.push.jobs
        self.assertIs(jobs.ui_mode, UIMode.USER_INTERACTION)
        self.assertEqual((jobs.version, jobs.data_coding, jobs.concat_iei), (12, 0xF5, 0x08))
        self.assertEqual((jobs.local_ton, jobs.local_npi), (2, 0))

    def test_every_ui_mode(self) -> None:
        """
        Every spelling the schema accepts names its UIMode.
        """
        for spelling, mode in (
            ("not-specified", UIMode.NOT_SPECIFIED),
            ("background", UIMode.BACKGROUND),
            ("informative", UIMode.INFORMATIVE),
            ("user-interaction", UIMode.USER_INTERACTION),
        ):
            self.assertIs(self.load(f"[push]\nui_mode = {spelling}\n").push.jobs.ui_mode, mode)

    def test_smsc(self) -> None:
        """
        With a host, [smpp] becomes the SMSC's settings and the SMPP session's
        configuration, in enums, floats and an Address.
        """
        loaded = self.load(
            "[smpp]\nhost = ::1\nport = 2776\ntls = yes\nsystem_id = mdmd\npassword = pw\n"
            "bind_type = transmitter\nsource_addr = MDMD\nsource_ton = 5\nregistered_delivery = no\n"
            "throughput = 20\nresponse_timeout = 9\nconnect_timeout = 4\nreconnect_max_delay = 30\n"
            "submit_id_base = hex\nreceipt_id_base = dec\n"
        )
        smsc = loaded.smpp
        assert smsc is not None
        self.assertEqual(smsc.address, "tls:[::1]:2776")
        self.assertEqual((smsc.connect_timeout, smsc.reconnect_max_delay), (4.0, 30.0))
        session = smsc.session
        self.assertIs(session.bind_type, BindType.TRANSMITTER)
        self.assertEqual(session.source, Address("MDMD", 5, 0))
        self.assertEqual((session.registered_delivery, session.throughput, session.response_timeout), (0, 20.0, 9.0))
        self.assertEqual((session.submit_id_base, session.receipt_id_base), (MessageIdBase.HEX, MessageIdBase.DEC))

    def test_unlimited_throughput(self) -> None:
        """
        A throughput of 0 means no limit (None), and receipts are asked for by default.
        """
        smsc = self.load("[smpp]\nhost = smsc.example\nsystem_id = mdmd\n").smpp
        assert smsc is not None
        self.assertEqual(smsc.address, "tcp:smsc.example:2775")
        self.assertEqual((smsc.session.throughput, smsc.session.registered_delivery), (None, 0x01))

    def test_dm(self) -> None:
        """
        [dm] becomes the session engine's settings and the endpoint's certificate rule.
        """
        loaded = self.load(
            "[dm]\nmax_message_size = 2048\nmax_object_size = 4096\nmax_auth_failures = 5\n"
            "require_client_certificate = no\n"
        )
        session = loaded.dm.session
        self.assertEqual((session.default_max_msg_size, session.max_obj_size, session.max_auth_failures), (2048, 4096, 5))
        self.assertFalse(loaded.dm.require_client_certificate)

    def test_server_credential_per_kind(self) -> None:
        """
        [dm] send_server_credential names the kinds whose sessions start owing our
        credential: classic OMA DM devices by default, Windows only when listed.
        """
        default = self.load("").dm
        self.assertEqual(default.send_server_credential, frozenset({DeviceKind.OMADM}))
        self.assertTrue(default.session_for(DeviceKind.OMADM).send_server_credential)
        self.assertFalse(default.session_for(DeviceKind.WINDOWS).send_server_credential)
        both = self.load("[dm]\nsend_server_credential = windows, omadm\n").dm
        self.assertTrue(both.session_for(DeviceKind.WINDOWS).send_server_credential)
        none = self.load("[dm]\nsend_server_credential =\n").dm
        self.assertFalse(none.session_for(DeviceKind.OMADM).send_server_credential)
        self.assertEqual(none.session_for(DeviceKind.OMADM).max_auth_failures, none.session.max_auth_failures)

    def test_push_provider_id(self) -> None:
        """
        Package #0 names the configured provider id for devices without a server id of their own.
        """
        self.assertEqual(self.load("[enrollment]\nprovider_id = acme\n").push.jobs.provider_id, "acme")


class EnrollmentTests(SettingsTestCase):
    def test_one_source_of_truth(self) -> None:
        """
        The policy's validity is [ca] client_cert_lifetime_days; its renewal
        period is [enrollment] renewal_period_days, also the document's RenewPeriod.
        """
        enrollment = self.load("[ca]\nclient_cert_lifetime_days = 90\n[enrollment]\nrenewal_period_days = 30\n").enrollment
        self.assertEqual(enrollment.policy.validity_seconds, 90 * 86400)
        self.assertEqual(enrollment.policy.renewal_seconds, 30 * 86400)
        self.assertEqual(enrollment.account.renew_period_days, 30)

    def test_issuing_concurrency(self) -> None:
        """
        With the embedded store enrollments are issued one at a time; with a
        shared store, as many as the connection pool allows.
        """
        self.assertEqual(self.load().enrollment.issuing_concurrency, 1)
        self.assertEqual(self.load("[store]\nuri = zeo://db:8100\npool_size = 5\n").enrollment.issuing_concurrency, 5)

    def test_store_upkeep(self) -> None:
        """
        [store] pack_interval and index_save_interval are seconds (0: off),
        pack_keep_days days (fractions too); by default a daily pack keeping a day, the index
        saved every five minutes.
        """
        self.assertEqual(self.load().store.upkeep, UpkeepSettings(86400.0, 1.0, 300.0))
        upkeep = self.load("[store]\npack_interval = 0\npack_keep_days = 0.25\nindex_save_interval = 60\n").store.upkeep
        self.assertEqual(upkeep, UpkeepSettings(pack_interval=0.0, pack_keep_days=0.25, index_save_interval=60.0))

    def test_account(self) -> None:
        """
        The DM account template names the provider and the server, and leaves
        the DM URL for when the HTTPS port is known.
        """
        enrollment = self.load("[enrollment]\nprovider_id = acme\ndisplay_name = Acme MDM\n").enrollment
        self.assertEqual((enrollment.account.provider_id, enrollment.account.name), ("acme", "Acme MDM"))
        self.assertEqual(enrollment.account.dm_url, "")
        self.assertEqual(enrollment.policy.name, "Acme MDM device")


class ErrorsTests(SettingsTestCase):
    def test_every_problem_reported(self) -> None:
        """
        Loading settings validates first: every problem of the file is raised together.
        """
        with self.assertRaises(ConfigErrors) as caught:
            self.load("[push]\nui_mode = loud\n[smpp]\nhost = smsc.example\n")
        joined = "\n".join(caught.exception.errors)
        self.assertIn("[push] ui_mode: expected one of", joined)
        self.assertIn("[smpp] system_id: must be set when host is", joined)


class DevicesTests(SettingsTestCase):
    """
    Device kinds: registration defaults, certificate rules per kind, device CAs.
    """

    def test_registration(self) -> None:
        """
        A classic device gets [enrollment] provider_id as its server id by
        default and [dm] inventory_omadm as its inventory; the certificate
        defaults are the DM endpoint's.
        """
        loaded = self.load(
            "[enrollment]\nprovider_id = acme\n[dm]\ninventory_omadm = ./DevInfo/Man\n"
            "require_client_certificate_omadm = yes\ninventory = ./DevDetail/SwV\n"
        )
        self.assertEqual((loaded.registration.server_id, loaded.registration.inventory), ("acme", ("./DevInfo/Man",)))
        self.assertEqual(loaded.enrollment.inventory, ("./DevDetail/SwV",))
        self.assertEqual(loaded.registration.certificate_defaults, {DeviceKind.WINDOWS: True, DeviceKind.OMADM: True})
        self.assertEqual(loaded.dm.certificate_defaults, loaded.registration.certificate_defaults)
        self.assertEqual(loaded.dm.device_cas, ())

    def test_device_cas(self) -> None:
        """
        The certificates of [https] device_ca_file reach both the TLS layer
        (the CA's settings) and the DM endpoint; a file without a CA
        certificate is refused with the rest of the configuration's errors.
        """
        pki = DevicePKI()
        path = os.path.join(self.base, "cas.pem")
        with open(path, "wb") as f:
            f.write(pki.pem())
        loaded = self.load("[https]\ndevice_ca_file = cas.pem\n")
        self.assertEqual(tuple(loaded.ca.device_cas), (pki.certificate,))
        self.assertEqual(loaded.dm.device_cas, (pki.certificate,))
        leaf = pki.issue(generate_rsa_key(2048).public_key(), "DEV")
        for content, problem in ((b"garbage\n", "holds no PEM certificate"), (certificate_pem(leaf), "is not a CA certificate")):
            with open(path, "wb") as f:
                f.write(content)
            with self.assertRaises(ConfigErrors) as caught:
                self.load("[https]\ndevice_ca_file = cas.pem\n")
            self.assertIn(problem, str(caught.exception))


class HardeningSettingsTests(SettingsTestCase):
    def test_https_limits_and_ciphers(self) -> None:
        """
        [https] timeouts are float seconds, the caps a ConnectionLimits, the
        cipher string the CA service's (which builds the TLS options).
        """
        loaded = self.load(
            "[https]\nheader_timeout = 7\nbody_timeout = 30\nmax_connections = 50\n"
            "max_connections_per_source = 0\nciphers = ECDHE+AESGCM\n"
        )
        self.assertEqual((loaded.https.header_timeout, loaded.https.body_timeout), (7.0, 30.0))
        self.assertEqual(loaded.https.connections, ConnectionLimits(total=50, per_source=0))
        self.assertEqual(loaded.ca.tls_ciphers, "ECDHE+AESGCM")

    def test_password_limits(self) -> None:
        """
        [limits] becomes the user checker's PasswordLimits.
        """
        loaded = self.load(
            "[limits]\npassword_failures_per_user = 3\npassword_failures_per_source = 9\n"
            "password_max_delay = 8\npassword_lockout = 60\npassword_tracked = 500\n"
            "password_checks = 2\npassword_queue = 5\n"
        )
        self.assertEqual(
            loaded.passwords,
            PasswordLimits(
                guesses=GuessLimits(user_failures=3, source_failures=9, max_delay=8.0, lockout=60.0, tracked=500),
                concurrent=2,
                queued=5,
            ),
        )
        self.assertEqual(self.load().passwords, PasswordLimits())
WNS = """
[wns]
enabled = yes
pfn = Contoso.MDMPush_8wekyb3d8bbwe
package_sid = ms-app://s-1-15-2-1
secret_file = wns.secret
"""


class WnsTests(SettingsTestCase):
    def test_off(self) -> None:
        """
        Without [wns] enabled there is no WNS transport, no channel set-up,
        no PFN in the provisioning document, and the poll schedule is as configured.
        """
        loaded = settings.load(None, base_dir=self.base)
        self.assertEqual((loaded.wns, loaded.dm.push_channel, loaded.enrollment.account.push_pfn), (None, None, ""))
        self.assertEqual(loaded.enrollment.account.poll.remaining_interval, 480)

    def test_classic(self) -> None:
        """
        The classic flow: the package SID is the client id, Live's token
        endpoint; the secret file is absolute; the channel side knows the PFN,
        the provider and the refresh interval; the PFN goes in the provisioning document.
        """
        from mdmd.notify.wns_protocol import TokenFlow

        loaded = self.load(WNS + "concurrency = 8\nrefresh_days = 3\nmax_attempts = 2\n")
        wns = loaded.wns
        assert wns is not None
        self.assertEqual(
            (wns.flow, wns.client_id, wns.token_url, wns.secret_file, wns.concurrency, wns.retry.attempts),
            (TokenFlow.CLASSIC, "ms-app://s-1-15-2-1", "https://login.live.com/accesstoken.srf",
             os.path.join(self.base, "wns.secret"), 8, 2),
        )
        channel = loaded.dm.push_channel
        assert channel is not None
        self.assertEqual(
            (channel.pfn, channel.provider_id, channel.refresh, channel.hosts, channel.pfn_at_enrollment),
            ("Contoso.MDMPush_8wekyb3d8bbwe", "mdmd", 3 * 86400.0, ("notify.windows.com",), True),
        )
        self.assertEqual(loaded.enrollment.account.push_pfn, "Contoso.MDMPush_8wekyb3d8bbwe")

    def test_entra(self) -> None:
        """
        The Entra flow: the app's client id, the tenant's token endpoint (or the configured one).
        """
        from mdmd.notify.wns_protocol import TokenFlow

        text = WNS + "token_flow = entra\ntenant_id = contoso\nclient_id = 11111111-2222\n"
        wns = self.load(text).wns
        assert wns is not None
        self.assertEqual(
            (wns.flow, wns.client_id, wns.token_url),
            (TokenFlow.ENTRA, "11111111-2222", "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"),
        )
        wns = self.load(text + "token_url = https://127.0.0.1:9443/t\nnotify_url = https://127.0.0.1:9443\n").wns
        assert wns is not None
        self.assertEqual((wns.token_url, wns.notify_url), ("https://127.0.0.1:9443/t", "https://127.0.0.1:9443"))

    def test_session_delivery(self) -> None:
        """
        With pfn_delivery session, the provisioning document has no PFN; the check-in sets it.
        """
        loaded = self.load(WNS + "pfn_delivery = session\n")
        self.assertEqual(loaded.enrollment.account.push_pfn, "")
        assert loaded.dm.push_channel is not None
        self.assertFalse(loaded.dm.push_channel.pfn_at_enrollment)

    def test_poll_schedule(self) -> None:
        """
        With WNS, devices' long-term poll is [wns] poll_interval (1440 by
        default); 0 keeps [enrollment] poll_schedule's.
        """
        self.assertEqual(self.load(WNS).enrollment.account.poll.remaining_interval, 1440)
        self.assertEqual(self.load(WNS + "poll_interval = 2880\n").enrollment.account.poll.remaining_interval, 2880)
        self.assertEqual(self.load(WNS + "poll_interval = 0\n").enrollment.account.poll.remaining_interval, 480)

    def test_warnings(self) -> None:
        """
        A poll shorter than a day with WNS, or longer than a day with nothing
        to wake devices, is warned about; the defaults and a sound set-up are not.
        """
        self.assertEqual(settings.load(None, base_dir=self.base).warnings, ())
        self.assertEqual(self.load(WNS).warnings, ())
        (warning,) = self.load(WNS + "poll_interval = 0\n").warnings
        self.assertIn("devices poll every 480 minutes although WNS wakes them", warning)
        (warning,) = self.load("[enrollment]\npoll_schedule = 3x5, 15x8, 2880\n").warnings
        self.assertIn("neither WNS nor an SMSC can wake them", warning)
        smsc = "[enrollment]\npoll_schedule = 3x5, 15x8, 2880\n[smpp]\nhost = smsc\nsystem_id = mdmd\n"
        self.assertEqual(self.load(smsc).warnings, ())
