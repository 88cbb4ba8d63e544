"""
SyncML DM messages shaped like those real devices and servers exchange, for
the codec tests and C{bench/bench_syncml_codecs.py}.

L{WINDOWS_PACKAGE1} is shaped like a Windows 11 check-in (as XML bytes);
L{server_message} is a server answer using every management command;
L{large_results} is a device message carrying a large Results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mdmd.syncml.model import (
    Add,
    Alert,
    Atomic,
    Chal,
    Command,
    Delete,
    Exec,
    Get,
    Item,
    Location,
    Meta,
    Replace,
    Results,
    Sequence,
    Status,
    SyncHdr,
    SyncML,
)

DEVICE_ID = "{F3A2C1D0-1B2C-4D5E-8F90-A1B2C3D4E5F6}"
SERVER_URL = "https://mdm.example.com/ManagementServer/MDM.svc"

#: Package 1 shaped like a Windows 11 check-in: hex SessionID, MD5 Cred with
#: LocName, MaxMsgSize, xmlns:msft on SyncBody, a Status 500 for the server's
#: previous SyncHdr, Alerts 1201 and 1224 (Type in Microsoft's
#: C{syncml:metinfo} namespace, Format in none), DevInfo and HWDevID.
WINDOWS_PACKAGE1 = (
    b'<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>'
    b"<SessionID>D</SessionID><MsgID>1</MsgID>"
    b"<Target><LocURI>" + SERVER_URL.encode() + b"</LocURI></Target>"
    b"<Source><LocURI>" + DEVICE_ID.encode() + b"</LocURI><LocName>dummy</LocName></Source>"
    b'<Cred><Meta><Format xmlns="syncml:metinf">b64</Format>'
    b'<Type xmlns="syncml:metinf">syncml:auth-md5</Type></Meta>'
    b"<Data>Zz6EivR3yeaaENcRN6lpAQ==</Data></Cred>"
    b'<Meta><MaxMsgSize xmlns="syncml:metinf">524288</MaxMsgSize></Meta></SyncHdr>'
    b'<SyncBody xmlns:msft="http://schemas.microsoft.com/MobileDevice/MDM">'
    b"<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd>"
    b"<Data>500</Data></Status>"
    b"<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>"
    b"<Alert><CmdID>3</CmdID><Data>1224</Data><Item><Meta>"
    b'<Type xmlns="syncml:metinfo">com.microsoft/MDM/LoginStatus</Type><Format>chr</Format>'
    b"</Meta><Data>user</Data></Item></Alert>"
    b"<Replace><CmdID>4</CmdID>"
    b"<Item><Source><LocURI>./DevInfo/DevId</LocURI></Source><Data>"
    + DEVICE_ID.encode()
    + b"</Data></Item>"
    b"<Item><Source><LocURI>./DevInfo/Man</LocURI></Source><Data>Contoso Ltd.</Data></Item>"
    b"<Item><Source><LocURI>./DevInfo/Mod</LocURI></Source><Data>Virtual Machine</Data></Item>"
    b"<Item><Source><LocURI>./DevInfo/DmV</LocURI></Source><Data>1.3</Data></Item>"
    b"<Item><Source><LocURI>./DevInfo/Lang</LocURI></Source><Data>en-US</Data></Item>"
    b"<Item><Source><LocURI>./Vendor/MSFT/DMClient/HWDevID</LocURI></Source>"
    b"<Data>7D3A5F1C9B2E4D6A8C0F1E3D5B7A9C2E4F6A8B0D1C3E5F7A9B2D4C6E8F0A1B3C</Data></Item>"
    b"</Replace><Final/></SyncBody></SyncML>"
)


def header(
    target: str | Location,
    source: str | Location,
    session_id: str = "D",
    msg_id: str = "1",
    **fields: Any,
) -> SyncHdr:
    """
    A SyncHdr to C{target} from C{source} (LocURIs or Locations); other header fields as keywords.
    """
    return SyncHdr(
        session_id=session_id,
        msg_id=msg_id,
        target=target if isinstance(target, Location) else Location(loc_uri=target),
        source=source if isinstance(source, Location) else Location(loc_uri=source),
        **fields,
    )


def server_header(msg_id: str = "1") -> SyncHdr:
    """
    The header of a server message answering the Windows device above.
    """
    return header(DEVICE_ID, SERVER_URL, msg_id=msg_id)


def _policy(n: int) -> str:
    return f"./Device/Vendor/MSFT/Policy/Config/Experience/Setting{n:02d}"


def targeted(
    cls: Callable[..., Command], cmd_id: int, uri: str, data: str | None = None, fmt: str | None = None
) -> Command:
    """
    A server command on one node: C{cls(cmd_id, Item(Target uri, Meta Format fmt, data))}.
    """
    item = Item(target=Location(loc_uri=uri), meta=Meta(format=fmt) if fmt else None, data=data)
    return cls(cmd_id=str(cmd_id), items=(item,))


def server_message() -> SyncML:
    """
    A package-2 style server message of 20 commands: statuses, then management commands.
    """
    commands: list[Command] = [
        Status(
            cmd_id="1",
            msg_ref="1",
            cmd_ref="0",
            cmd="SyncHdr",
            target_refs=(SERVER_URL,),
            source_refs=(DEVICE_ID,),
            chal=Chal(
                meta=Meta(
                    format="b64", type="syncml:auth-md5", next_nonce="q83vEjRWeJCrze8SNFZ4kA=="
                )
            ),
            data="212",
        ),
        Status(cmd_id="2", msg_ref="1", cmd_ref="2", cmd="Alert", data="200"),
        Status(cmd_id="3", msg_ref="1", cmd_ref="3", cmd="Alert", data="200"),
        Status(cmd_id="4", msg_ref="1", cmd_ref="4", cmd="Replace", data="200"),
    ]
    commands += [targeted(Get, n, f"./DevDetail/Ext/Microsoft/Item{n}") for n in range(5, 10)]
    commands += [targeted(Replace, n, _policy(n), str(n % 2), "int") for n in range(10, 16)]
    renew = "./Vendor/MSFT/CertificateStore/My/WSTEP/Renew/RenewPeriod"
    commands += [
        targeted(Add, 16, "./Vendor/MSFT/DMClient/Provider/MDMD/EntDMID", "device-0001", "chr"),
        Atomic(cmd_id="17", commands=(targeted(Replace, 18, renew, "42", "int"),)),
        Sequence(cmd_id="19", commands=(targeted(Delete, 20, _policy(99)),)),
        targeted(Exec, 21, "./Vendor/MSFT/DMClient/Provider/MDMD/Unenroll", "MDMD", "chr"),
        Alert(
            cmd_id="22",
            data="1100",
            items=(Item(data="Your device is managed by <Contoso> & co."),),
        ),
    ]
    return SyncML(header=server_header("1"), body=tuple(commands), final=True)


def large_results(total: int = 64 * 1024, items: int = 16) -> SyncML:
    """
    A device message whose Results carry C{total} bytes of text across C{items} Items.
    """
    per_item = total // items
    line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/\n"
    chunk = (line * (per_item // len(line) + 1))[:per_item]
    results = Results(
        cmd_id="2",
        msg_ref="1",
        cmd_ref="5",
        items=tuple(
            Item(
                source=Location(loc_uri=f"./Vendor/MSFT/DiagnosticLog/Blob{n}"),
                meta=Meta(format="chr", type="text/plain"),
                data=chunk,
            )
            for n in range(items)
        ),
    )
    status = Status(cmd_id="1", msg_ref="1", cmd_ref="0", cmd="SyncHdr", data="200")
    return SyncML(
        header=header(SERVER_URL, DEVICE_ID, msg_id="2"), body=(status, results), final=True
    )

