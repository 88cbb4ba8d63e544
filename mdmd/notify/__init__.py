"""
Server-initiated notification: OMA DM package #0 carried as a WAP Push SMS
over an SMPP 3.4 session; and the bootstrap of a classic device's DM account
(OMA Client Provisioning) over the same path.

The pipeline is pure up to the socket: L{mdmd.notify.pkg0} builds the trigger
(L{mdmd.notify.provisioning_doc} and L{mdmd.notify.bootstrap} the
authenticated provisioning push), L{mdmd.notify.wap} wraps it (WSP push, WDP ports, concatenation) into SMS
segments, L{mdmd.notify.smpp_pdu} encodes SMPP PDUs and L{mdmd.notify.smpp_session}
runs the ESME session state machine. L{mdmd.notify.smpp_client} is the only module
here that touches Twisted.
"""
