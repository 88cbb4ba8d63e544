"""
Fakes and emulators shared by mdmd's tests and benchmarks (importable, never used by the daemon).

Like C{treq.testing}, these are part of the package so that tests, benchmarks
and operators' own integration tests can use them, and each is tested
against what it stands in for (C{tests/testing/}):

  - C{store}: the real ZODB in memory, units of work run synchronously;
  - C{reactor}: a memory reactor with threads that run work at once;
  - C{devices}: an enrolled (or registered classic) device put straight into a store;
  - C{randomness}: deterministic random sources;
  - C{daemon}: the real daemon as a subprocess;
  - C{windows}: a Windows device enrolling (C{device}, C{soap}, C{csr},
    C{provisioning}), and C{dmclient}, its DM client;
  - C{omadm}: a classic OMA DM device (a handset, a modem) as libdmclient
    behaves, with an HTTPS driver;
  - C{syncml}: realistic SyncML messages;
  - C{smsc}: a fake SMSC, and mdmd's SMPP client wired to it in memory;
  - C{telnet}: a telnet client for the manhole.
"""
