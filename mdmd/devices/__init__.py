"""
Devices, whatever enrolled or registered them: their kinds and DM accounts,
their lifecycle and their records.

L{mdmd.devices.accounts} holds the device kinds and the DM account (parsed,
completed, kept in a record); L{mdmd.devices.lifecycle} is the one state
machine of a device record; L{mdmd.devices.records} reads records (and
removes them) for the operator's surfaces; L{mdmd.devices.registration}
registers classic OMA DM devices (one, or an import of many) and edits
accounts. How a Windows device comes to be (MS-MDE2 enrollment and renewal)
lives with its protocol, in L{mdmd.enroll.devices}.
"""
