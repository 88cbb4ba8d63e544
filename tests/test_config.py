"""
Tests for L{mdmd.config}.
"""

import os
import re
import socket

from twisted.trial.unittest import SynchronousTestCase

from mdmd import config
from mdmd.config import ConfigErrors, ListenAddress

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "etc", "mdmd.conf")


class ConfigTestCase(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def errors(self, text: str) -> str:
        """
        Every error loading C{text} reports, one per line.
        """
        with self.assertRaises(ConfigErrors) as caught:
            config.load(self.write(text))
        return "\n".join(caught.exception.errors)


class LoadTests(ConfigTestCase):

    def test_development_defaults(self) -> None:
        """
        With no file, state lives in ./var, HTTPS on 127.0.0.1:8443, host name localhost.
        """
        base = os.path.abspath(self.mktemp())
        loaded = config.load(None, base_dir=base)
        self.assertEqual(loaded.state_dir, os.path.join(base, "var"))
        self.assertEqual(loaded.https.listen, ListenAddress("tcp", "127.0.0.1", 8443))
        self.assertEqual(loaded.server.hostname, "localhost")
        self.assertEqual(loaded.store_uri, "file://" + os.path.join(base, "var", "Data.fs"))
        self.assertEqual(loaded.admin.listen, ListenAddress("unix", path=os.path.join(base, "var", "admin.sock")))
        self.assertEqual(loaded.admin_token_file, os.path.join(base, "var", "admin.token"))

    def test_values_parsed(self) -> None:
        """
        Options are parsed into typed values; relative paths resolve against the base.
        """
        path = self.write(
            "[server]\nhostname = mdm.example.com\nextra_hostnames = a.example, 10.0.0.1\n"
            "state_dir = /srv/mdmd\n[https]\nlisten = [::1]:443\nmax_body = 0x10000\n"
            "[store]\nuri = zeo://db.example:8100\n[admin]\nlisten = tcp:127.0.0.1:0\n"
        )
        loaded = config.load(path, base_dir="/base")
        self.assertEqual(loaded.server.extra_hostnames, ("a.example", "10.0.0.1"))
        self.assertEqual(loaded.https.listen, ListenAddress("tcp", "::1", 443))
        self.assertEqual(loaded.https.max_body, 65536)
        self.assertEqual(loaded.store_uri, "zeo://db.example:8100")
        self.assertEqual(loaded.admin.listen, ListenAddress("tcp", "127.0.0.1", 0))
        self.assertEqual(loaded.state_dir, "/srv/mdmd")

    def test_empty_hostname_is_the_fqdn(self) -> None:
        """
        An empty host name (the Debian package's default) means this machine's FQDN.
        """
        path = self.write("[server]\nhostname =\n")
        self.assertEqual(config.load(path).server.hostname, socket.getfqdn())

    def test_every_error_reported_at_once(self) -> None:
        """
        All problems of a file are listed together, each naming section and option.
        """
        path = self.write(
            "[server]\nhostname = x\nbogus = 1\n[https]\nlisten = nonsense\nmax_body = big\n"
            "[store]\nuri = mysql://x\npool_size = 0\n[admin]\nlisten = tcp:0.0.0.0:9000\n"
            "[nosuch]\na = b\n"
        )
        with self.assertRaises(ConfigErrors) as caught:
            config.load(path)
        errors = caught.exception.errors
        self.assertEqual(len(errors), 7, errors)
        joined = "\n".join(errors)
        for expected in (
            "[server] bogus: unknown option",
            "[https] listen: expected HOST:PORT",
            "[https] max_body: expected an integer",
            "[store] uri: unsupported store URI scheme 'mysql'",
            "[store] pool_size: must be at least 1",
            "[admin] listen: 0.0.0.0 is not a loopback address",
            "[nosuch]: unknown section",
        ):
            self.assertIn(expected, joined)

    def test_numbers_finite_and_bounded(self) -> None:
        """
        A number option refuses NaN and infinity, and a value past its bound.
        """
        for raw, expected in (
            ("nan", "[store] pack_keep_days: expected a finite number, got 'nan'"),
            ("inf", "[store] pack_keep_days: expected a finite number, got 'inf'"),
            ("3651", "[store] pack_keep_days: must be at most 3650.0"),
        ):
            self.assertEqual(self.errors(f"[server]\nhostname = x\n[store]\npack_keep_days = {raw}\n"), expected)

    def test_certificate_files_checked(self) -> None:
        """
        An operator certificate needs its key, and both files must exist.
        """
        path = self.write("[https]\ncert_file = /nonexistent/cert.pem\n")
        with self.assertRaises(ConfigErrors) as caught:
            config.load(path)
        joined = "\n".join(caught.exception.errors)
        self.assertIn("set both or neither", joined)
        self.assertIn("/nonexistent/cert.pem does not exist", joined)

    def test_unreadable_file(self) -> None:
        """
        A missing file is one clear error.
        """
        with self.assertRaises(ConfigErrors) as caught:
            config.load("/nonexistent/mdmd.conf")
        self.assertEqual(len(caught.exception.errors), 1)
        self.assertIn("cannot read /nonexistent/mdmd.conf", str(caught.exception))


class ExampleFileTests(SynchronousTestCase):
    def test_example_is_current(self) -> None:
        """
        etc/mdmd.conf is exactly what the schema renders: every option, with its default.
        """
        with open(EXAMPLE) as f:
            self.assertEqual(f.read(), config.render_example())

    def test_example_defaults_are_the_defaults(self) -> None:
        """
        Uncommenting every option of etc/mdmd.conf changes nothing.
        """
        with open(EXAMPLE) as f:
            text = re.sub(r"(?m)^#(\w+ =)", r"\1", f.read())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        base = os.path.abspath(self.mktemp())
        self.assertEqual(config.load(path, base_dir=base), config.load(None, base_dir=base))
        self.assertEqual(len(re.findall(r"(?m)^#\w+ =", open(EXAMPLE).read())), len(list(config.iter_options())))


class ReadmeTests(SynchronousTestCase):
    def test_reference_is_current(self) -> None:
        """
        README.md's configuration reference is exactly what the schema renders.
        """
        with open(os.path.join(HERE, "..", "README.md")) as f:
            text = f.read()
        block = text.split("<!-- config-reference:start -->\n", 1)[1].split("<!-- config-reference:end -->", 1)[0]
        self.assertEqual(block, config.render_reference())


class EnrollmentSectionTests(ConfigTestCase):

    def test_defaults(self) -> None:
        """
        OnPremise, EnrollmentVersion up to 3.0, 2048-bit keys, renewal 60 days
        before expiry every 4 days, XML, DIGEST, and the 3x5/15x8/480 poll schedule.
        """
        enrollment = config.load(None, base_dir=os.path.abspath(self.mktemp())).enrollment
        self.assertEqual(
            (enrollment.auth_policy, enrollment.enrollment_version, enrollment.min_key_length),
            ("OnPremise", "3.0", 2048),
        )
        self.assertEqual((enrollment.renewal_period_days, enrollment.renewal_retry_days), (60, 4))
        self.assertEqual(enrollment.poll_schedule, config.PollSchedule(3, 5, 15, 8, 480, 0))
        self.assertEqual(enrollment.device_auth_type, "DIGEST")

    def test_values(self) -> None:
        """
        Options parse into typed values; public_port is read; the CA file path is made absolute.
        """
        ca = os.path.abspath(self.mktemp())
        open(ca, "w").close()
        path = self.write(
            "[server]\npublic_port = 443\n[enrollment]\nauth_policy = Federated\n"
            f"poll_schedule = 1x2, 30X4, 1440x10\nenrollment_version = 5.0\ncertificate_ca_file = {ca}\n"
            "poll_on_login = no\n"
        )
        loaded = config.load(path)
        self.assertEqual(loaded.server.public_port, 443)
        self.assertEqual(loaded.enrollment.auth_policy, "Federated")
        self.assertEqual(loaded.enrollment.poll_schedule, config.PollSchedule(1, 2, 30, 4, 1440, 10))
        self.assertEqual(str(loaded.enrollment.poll_schedule), "1x2, 30x4, 1440x10")
        self.assertEqual(loaded.enrollment.certificate_ca_file, ca)
        self.assertFalse(loaded.enrollment.poll_on_login)

    def test_errors(self) -> None:
        """
        Bad values and inconsistent periods are reported, each naming the option.
        """
        joined = self.errors(
            "[server]\npublic_port = 70000\n[enrollment]\nauth_policy = Kerberos\npoll_schedule = 1x0, 5x1, 9\n"
            "enrollment_version = three\nrenewal_period_days = 400\nrenewal_retry_days = 500\n"
            "provider_id = a/b\ncertificate_ca_file = /nonexistent.pem\ninitial_backoff_ms = 999999\n"
            "max_backoff_ms = 5000\n"
        )
        for expected in (
            "[server] public_port: must be at most 65535",
            "[enrollment] auth_policy: expected one of OnPremise, Federated, Certificate",
            "[enrollment] poll_schedule: the first two retry counts must be at least 1",
            "[enrollment] enrollment_version: expected a version number",
            "[enrollment] renewal_retry_days: must not exceed renewal_period_days",
            "[enrollment] renewal_period_days: must not exceed [ca] client_cert_lifetime_days",
            "[enrollment] provider_id: must be non-empty",
            "[enrollment] certificate_ca_file: /nonexistent.pem does not exist",
            "[enrollment] initial_backoff_ms: must not exceed max_backoff_ms",
        ):
            self.assertIn(expected, joined)

    def test_poll_schedule_forms(self) -> None:
        """
        A schedule needs three parts, the first two with counts, all whole numbers.
        """
        for text in ("3x5, 15x8", "3, 15x8, 480", "3x5, 15x8, 4a", "0x5, 15x8, 480"):
            path = self.write(f"[enrollment]\npoll_schedule = {text}\n")
            with self.assertRaises(ConfigErrors) as caught:
                config.load(path)
            self.assertIn("[enrollment] poll_schedule", str(caught.exception))


class ServerCredentialConfigTests(ConfigTestCase):
    def test_send_server_credential(self) -> None:
        """
        [dm] send_server_credential lists device kinds (omadm by default, may be empty);
        an unknown kind is named in the error.
        """
        self.assertEqual(config.load(self.write("")).dm.send_server_credential, ("omadm",))
        self.assertEqual(config.load(self.write("[dm]\nsend_server_credential = windows,omadm\n")).dm.send_server_credential, ("windows", "omadm"))
        self.assertEqual(config.load(self.write("[dm]\nsend_server_credential =\n")).dm.send_server_credential, ())
        self.assertIn(
            "[dm] send_server_credential: expected some of windows, omadm, got 'android'",
            self.errors("[dm]\nsend_server_credential = omadm, android\n"),
        )


class PushSectionsTests(ConfigTestCase):

    def test_defaults(self) -> None:
        """
        No SMSC (spool in state_dir/spool), version 11, background, 0x04, 8-bit
        concatenation, a day to answer; the manhole off, on a socket in state_dir.
        """
        base = os.path.abspath(self.mktemp())
        loaded = config.load(None, base_dir=base)
        push = loaded.push
        self.assertEqual((push.version, push.ui_mode, push.data_coding, push.concat_iei, push.expiry), (11, "background", "0x04", "0x00", 86400))
        self.assertEqual(push.spool_dir, os.path.join(base, "var", "spool"))
        self.assertEqual((loaded.smpp.host, loaded.smpp.port, loaded.smpp.bind_type, loaded.smpp.window), ("", 2775, "transceiver", 10))
        self.assertFalse(loaded.manhole.enabled)
        self.assertEqual(loaded.manhole.listen, ListenAddress("unix", path=os.path.join(base, "var", "manhole.sock")))
        self.assertEqual(loaded.manhole_password_file, os.path.join(base, "var", "manhole.passwd"))

    def test_values(self) -> None:
        """
        Octet choices accept any base and keep the 0xNN spelling; the manhole may use loopback TCP.
        """
        passwords = os.path.abspath(self.mktemp())
        open(passwords, "w").close()
        path = self.write(
            "[push]\ndata_coding = 245\nconcat_iei = 0x8\nspool_dir = /srv/spool\n"
            "[smpp]\nhost = smsc.example\nsystem_id = mdmd\ntls = yes\nsubmit_id_base = hex\n"
            f"[manhole]\nenabled = yes\nlisten = tcp:[::1]:7022\npassword_file = {passwords}\n"
        )
        loaded = config.load(path)
        self.assertEqual((loaded.push.data_coding, loaded.push.concat_iei, loaded.push.spool_dir), ("0xF5", "0x08", "/srv/spool"))
        self.assertEqual((loaded.smpp.tls, loaded.smpp.submit_id_base), (True, "hex"))
        self.assertEqual(loaded.manhole.listen, ListenAddress("tcp", "::1", 7022))

    def test_errors(self) -> None:
        """
        The manhole refuses non-loopback addresses; SMPP strings must fit their
        fields; a host needs a system_id.
        """
        joined = self.errors(
            "[push]\ndata_coding = 0x08\nui_mode = loud\nversion = 2000\n"
            "[smpp]\nhost = smsc.example\npassword = much-too-long\nvalidity_period = 1d\n"
            "ca_file = /nonexistent.pem\n"
            "[manhole]\nenabled = yes\nlisten = tcp:0.0.0.0:7022\npassword_file = /nonexistent\n"
        )
        for expected in (
            "[push] data_coding: expected one of 0x04, 0xF5, got '0x08'",
            "[push] ui_mode: expected one of",
            "[push] version: must be at most 1023",
            "[smpp] system_id: must be set when host is",
            "[smpp] password: at most 8 ASCII characters",
            "[smpp] validity_period: expected 16 characters",
            "[smpp] ca_file: /nonexistent.pem does not exist",
            "[manhole] listen: 0.0.0.0 is not a loopback address",
        ):
            self.assertIn(expected, joined)


class DMSectionTests(ConfigTestCase):
    """
    [dm]: the certificate requirement and the inventory per device kind.
    """

    def test_defaults(self) -> None:
        """
        Windows devices need a certificate and are asked for today's
        inventory; classic devices need none and are asked for OMA DM's
        standard DevInfo and DevDetail nodes.
        """
        dm = config.load(None, base_dir=os.path.abspath(self.mktemp())).dm
        self.assertEqual((dm.require_client_certificate_windows, dm.require_client_certificate_omadm), (True, False))
        self.assertIn("./DevDetail/Ext/Microsoft/OSPlatform", dm.inventory_windows)
        self.assertEqual(dm.inventory_omadm[:5], tuple(f"./DevInfo/{n}" for n in ("DevId", "Man", "Mod", "DmV", "Lang")))
        self.assertIn("./DevDetail/URI/MaxDepth", dm.inventory_omadm)
        self.assertFalse(any("Microsoft" in uri for uri in dm.inventory_omadm))

    def test_former_names(self) -> None:
        """
        The options' former names (before there were kinds) are still read,
        for the Windows options; both names at once are an error.
        """
        dm = config.load(self.write("[dm]\ninventory = ./DevDetail/SwV\nrequire_client_certificate = no\n")).dm
        self.assertEqual((dm.inventory_windows, dm.require_client_certificate_windows), (("./DevDetail/SwV",), False))
        self.assertEqual(
            self.errors("[dm]\ninventory =\ninventory_windows = ./DevDetail/SwV\n"),
            "[dm] inventory: the former name of inventory_windows; set only one of them",
        )
        self.assertIn("Its former name, inventory, is still read.", config.render_example())

    def test_inventory_checked(self) -> None:
        """
        Each kind's inventory must name DM nodes.
        """
        self.assertIn("[dm] inventory_omadm:", self.errors("[dm]\ninventory_omadm = ./DevInfo/Man, /DevInfo/Mod\n"))

    def test_device_ca_file(self) -> None:
        """
        [https] device_ca_file is empty by default, a path resolved like the others, and must exist.
        """
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        self.assertEqual(config.load(None, base_dir=base).https.device_ca_file, "")
        with open(os.path.join(base, "cas.pem"), "w"):
            pass
        loaded = config.load(self.write("[https]\ndevice_ca_file = cas.pem\n"), base_dir=base)
        self.assertEqual(loaded.https.device_ca_file, os.path.join(base, "cas.pem"))
        self.assertIn(
            "[https] device_ca_file: /nonexistent/cas.pem does not exist",
            self.errors("[https]\ndevice_ca_file = /nonexistent/cas.pem\n"),
        )


class HardeningOptionsTests(ConfigTestCase):
    """
    [https] ciphers, timeouts and connection caps; [limits].
    """

    def test_defaults(self) -> None:
        """
        The defaults: forward-secret AEAD TLS 1.2 suites, 20 s for a request
        head, 60 s for a body, 1000 connections and 100 per source; 5
        password failures per user name and 20 per source before waits of
        up to 16 s, then 15 minutes of lockout; one hashing at a time, 128 waiting.
        """
        loaded = config.load(None, base_dir=os.path.abspath(self.mktemp()))
        https, limits = loaded.https, loaded.limits
        self.assertEqual(https.ciphers, "ECDHE+AESGCM:ECDHE+CHACHA20")
        self.assertEqual(
            (https.header_timeout, https.body_timeout, https.max_connections, https.max_connections_per_source),
            (20, 60, 1000, 100),
        )
        self.assertEqual(
            (
                limits.password_failures_per_user,
                limits.password_failures_per_source,
                limits.password_max_delay,
                limits.password_lockout,
                limits.password_tracked,
                limits.password_checks,
                limits.password_queue,
            ),
            (5, 20, 16, 900, 10000, 1, 128),
        )

    def test_cipher_string_checked(self) -> None:
        """
        A cipher string that selects no TLS 1.2 suite is an error; another valid one is kept as written.
        """
        self.assertIn("[https] ciphers: no TLS 1.2 cipher suite matches 'NOTHING-AT-ALL'", self.errors("[https]\nciphers = NOTHING-AT-ALL\n"))
        loaded = config.load(self.write("[https]\nciphers = ECDHE+AESGCM\n"))
        self.assertEqual(loaded.https.ciphers, "ECDHE+AESGCM")

    def test_bounds(self) -> None:
        """
        Timeouts and caps are positive (a per-source cap may be 0: none); the limits have bounds.
        """
        errors = self.errors(
            "[https]\nheader_timeout = 0\nmax_connections = 0\nmax_connections_per_source = -1\n"
            "[limits]\npassword_failures_per_user = 0\npassword_checks = 0\npassword_lockout = 0\n"
        )
        for option in (
            "[https] header_timeout",
            "[https] max_connections:",
            "[https] max_connections_per_source",
            "[limits] password_failures_per_user",
            "[limits] password_checks",
            "[limits] password_lockout",
        ):
            self.assertIn(option, errors)
        loaded = config.load(self.write("[https]\nmax_connections_per_source = 0\n"))
        self.assertEqual(loaded.https.max_connections_per_source, 0)
class WnsSectionTests(ConfigTestCase):
    def test_defaults(self) -> None:
        """
        WNS is off; when on: the PFN in the enrollment, the classic flow,
        channels on notify.windows.com, 50 at once, read every 7 days, a day's poll.
        """
        wns = config.load(None, base_dir=os.path.abspath(self.mktemp())).wns
        self.assertEqual(
            (wns.enabled, wns.pfn_delivery, wns.token_flow, wns.channel_hosts, wns.concurrency, wns.refresh_days,
             wns.poll_interval),
            (False, "enrollment", "classic", ("notify.windows.com",), 50, 7, 1440),
        )

    def test_needs_per_flow(self) -> None:
        """
        Enabled, each flow needs its ids, the PFN and the secret file; off, nothing is checked.
        """
        self.assertEqual(config.load(self.write("[wns]\npfn = x\n")).wns.pfn, "x")
        joined = self.errors("[wns]\nenabled = yes\n")
        for option in ("pfn", "secret_file", "package_sid"):
            self.assertIn(f"[wns] {option}: must be set when WNS is enabled (token_flow classic)", joined)
        joined = self.errors("[wns]\nenabled = yes\ntoken_flow = entra\npfn = p\nsecret_file = s\n")
        for option in ("tenant_id", "client_id"):
            self.assertIn(f"[wns] {option}: must be set when WNS is enabled (token_flow entra)", joined)
        self.assertNotIn("package_sid", joined)

    def test_values(self) -> None:
        """
        The endpoints must be https URLs, the proxy an http one; files are made absolute.
        """
        joined = self.errors(
            "[wns]\ntoken_url = http://login.example/t\nnotify_url = ftp://x\nproxy = https://proxy:3128\n"
            "token_flow = carrier-pigeon\n"
        )
        self.assertIn("[wns] token_url: expected an https:// URL", joined)
        self.assertIn("[wns] notify_url: expected an https:// URL", joined)
        self.assertIn("[wns] proxy: expected http://HOST:PORT", joined)
        self.assertIn("[wns] token_flow: expected one of classic, entra", joined)
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        path = os.path.join(base, "mdmd.conf")
        with open(path, "w") as f:
            f.write("[wns]\nsecret_file = wns.secret\nchannel_hosts = notify.windows.com, relay.example\n")
        loaded = config.load(path, base_dir=base)
        self.assertEqual(loaded.wns.secret_file, os.path.join(base, "wns.secret"))
        self.assertEqual(loaded.wns.channel_hosts, ("notify.windows.com", "relay.example"))
