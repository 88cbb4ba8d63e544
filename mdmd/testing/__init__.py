"""
Fakes and emulators shared by mdmd's tests and benchmarks (importable, never used by the daemon).

Like C{treq.testing}, these are part of the package so that tests, benchmarks
and operators' own integration tests can use them: an in-memory store
(C{store}), the real daemon as a subprocess (C{daemon}), a fake SMSC
(C{smsc}) and a Windows device emulator (C{windows}).
"""
