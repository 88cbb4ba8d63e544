"""
mdmd: a device-management server for Windows (MS-MDE2 enrollment) and OMA DM 1.2 devices.
"""

__version__ = "0.1.0"
