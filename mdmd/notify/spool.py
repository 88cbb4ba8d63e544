"""
The spool transport: with no SMSC configured, each push job is written to a
directory as one JSON file, for a gateway of the operator's to pick up and
send (L{spool_document} says what a file holds).

Writing the file is the whole of sending: the outcome is known when
L{SpoolTransport.send} returns, and no delivery report ever comes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from mdmd.notify.jobs import JobRef, OutgoingPush
from mdmd.notify.transport import IPushListener, IPushTransport, Outcome, Refused, Sent

__all__ = ["SPOOL_FORMAT", "SpoolTransport", "spool_document", "spool_name"]

#: The C{format} member of every spool file.
SPOOL_FORMAT = "mdmd-push/1"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def spool_name(ref: JobRef) -> str:
    """
    The file name of a job in the spool: stable, so writing it again replaces it.
    """
    device_id, seq = ref
    digest = hashlib.sha256(device_id.encode("utf-8")).hexdigest()[:8]
    return f"push-{_UNSAFE.sub('_', device_id)[:48]}-{digest}-{seq}.json"


def spool_document(job: OutgoingPush) -> dict[str, Any]:
    """
    What a spool file holds (JSON, one job per file)::

        {"format": "mdmd-push/1", "device_id": ..., "seq": 3,
         "session_id": "1A2B",                 # the SessionID the device will use (null: a bootstrap)
         "destination": {"address": "491701234567", "ton": 1, "npi": 1},
         "msisdn": "+491701234567",
         "created_at": ..., "expires_at": ...,   # POSIX seconds
         "segments": [{"esm_class": 64, "data_coding": 4,
                       "short_message": "0605040b8423f0..."}]}

    Each segment is one SMS as for an SMPP submit_sm: C{short_message} (hex)
    starts with the user-data header (ports 2948/9200, concatenation), so
    C{esm_class} has UDHI (0x40) set and C{data_coding} says 8-bit data.
    """
    info = job.info
    return {
        "format": SPOOL_FORMAT,
        "device_id": info.device_id,
        "seq": info.seq,
        "session_id": info.session_text,
        "destination": {
            "address": job.destination.addr,
            "ton": job.destination.ton,
            "npi": job.destination.npi,
        },
        "msisdn": info.msisdn,
        "created_at": info.created_at,
        "expires_at": info.expires_at,
        "segments": [
            {
                "esm_class": s.esm_class,
                "data_coding": s.data_coding,
                "short_message": s.short_message.hex(),
            }
            for s in job.segments
        ],
    }


def _write_spool(directory: str, job: OutgoingPush) -> str:
    """
    Write the job's file whole (a hidden temporary file, then a rename, so a
    gateway never reads half a file); its path.

    @raise OSError: if the directory cannot be made or written.
    """
    os.makedirs(directory, mode=0o750, exist_ok=True)
    path = os.path.join(directory, spool_name(job.ref))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp")
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(spool_document(job), f, sort_keys=True)
        f.write("\n")
    os.replace(temporary, path)
    return path


@implementer(IPushTransport)
class SpoolTransport:
    """
    Push jobs as files in C{directory}; a directory that cannot be written
    refuses jobs for now (they are written once it can be).
    """

    via = "spool"
    #: nothing runs: a job is written when it is sent
    service = None

    def __init__(self, directory: str) -> None:
        if not directory:
            raise ValueError("the spool transport needs a directory")
        self.directory = directory

    def attach(self, listener: IPushListener) -> None:
        """
        Nothing to report: a file gets no receipts.
        """

    def send(self, job: OutgoingPush) -> Deferred[Outcome]:
        try:
            path = _write_spool(self.directory, job)
        except OSError as e:
            return succeed(Refused(f"cannot write to the spool: {e.strerror or e}", retry=True))
        return succeed(Sent(location=path, detail=f"written to {path}"))

    def describe(self) -> dict[str, Any]:
        """
        No SMSC link: pushes go to the spool directory.
        """
        return {"state": "not configured", "smsc": None, "spool_dir": self.directory}
