"""
Devices, whatever enrolled or registered them: their lifecycle and their records.

L{mdmd.devices.lifecycle} is the one state machine of a device record;
L{mdmd.devices.records} reads records (and removes them) for the operator's
surfaces. How a device comes to be (MS-MDE2 enrollment and renewal) lives
with its protocol, in L{mdmd.enroll.devices}.
"""
