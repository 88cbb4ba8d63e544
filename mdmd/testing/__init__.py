"""
Fakes and emulators shared by mdmd's tests and benchmarks.

Like C{treq.testing}, these are part of the package so that tests, benchmarks
and operators' own integration tests can use them: an in-memory store, a fake
SMSC, and a Windows device emulator.
"""
