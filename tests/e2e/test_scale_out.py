"""
Scale-out end to end: two daemons sharing one ZEO server answer the messages of
one DM session alternately, as they would behind a load balancer.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mdmd.testing.daemon import DaemonProcess
from mdmd.testing.dmclient import windows_dm_client
from mdmd.testing.windows.device import WindowsDevice

from ..servers import start_zeo


class TwoNodeTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        zeo = start_zeo(self)
        store = f"[store]\nuri = zeo://127.0.0.1:{zeo}\n"
        self.first = DaemonProcess(config=store)
        self.addCleanup(self.first.cleanup)
        self.first.start()
        # the second node shares the CA, TLS identity and token key of the first
        self.second = DaemonProcess(config=store)
        self.addCleanup(self.second.cleanup)
        for name in os.listdir(self.first.state_dir):
            source = os.path.join(self.first.state_dir, name)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(self.second.state_dir, name))
            elif name.endswith((".key", ".token")):
                shutil.copy2(source, os.path.join(self.second.state_dir, name))
        self.second.start()
        self.root = self.first.ca_certificate()

    async def test_session_alternates_between_nodes(self) -> None:
        """
        Enroll through one node, queue a command through the other, and run a
        session whose messages go to the two nodes in turn.
        """
        added = await deferToThread(self.first.mdmctl, "user", "add", "eve@example.com", stdin="pw-of-eve\n")
        self.assertEqual(added.returncode, 0, added.stderr)
        device = WindowsDevice(
            reactor,
            self.first.discovery_url,
            [self.root],
            user="eve@example.com",
            password="pw-of-eve",
        )
        self.addCleanup(device.close)
        await device.enroll()
        queued = await deferToThread(self.second.mdmctl, "cmd", device.device_id, "get", "./DevDetail/SwV")
        self.assertEqual(queued.returncode, 0, queued.stderr)

        nodes = [self.first, self.second]
        used: list[int] = []

        async def round_robin(body: bytes, content_type: str, headers: dict[str, str]) -> Any:
            node = nodes[len(used) % 2]
            used.append(node.https_port)
            url = f"https://localhost:{node.https_port}/ManagementServer/MDM.svc"
            reply = await device.request("POST", url, body, content_type=content_type, client_certificate=True)
            return reply.code, reply.headers, reply.body

        client = windows_dm_client(device, clock=reactor.seconds)
        log = await client.session(round_robin)
        self.assertEqual(len(set(used)), 2)
        self.assertEqual(log.header_statuses[0], "212")
        self.assertIn("Get", [type(c).__name__ for c in log.received])
        results = await deferToThread(self.first.mdmctl, "results", device.device_id, "--json")
        found = {c["spec"]["items"][0]["target"]: c for c in json.loads(results.stdout)}
        self.assertEqual(found["./DevDetail/SwV"]["state"], "done")
        self.assertEqual(found["./DevDetail/SwV"]["results"][0]["data"], client.tree["./DevDetail/SwV"])
