"""
Tests of the Windows device emulator, L{mdmd.testing.windows}.
"""
