"""
A Windows 10/11 MDM client, emulated, for tests and benchmarks of enrollment.

  - L{mdmd.testing.windows.device}: L{WindowsDevice<mdmd.testing.windows.device.WindowsDevice>},
    which enrolls over real TLS and keeps the identity for DM sessions
    (L{mdmd.testing.dmclient} is its DM side);
  - L{mdmd.testing.windows.soap}: the SOAP requests it sends (Discover,
    GetPolicies, RequestSecurityToken) and their security headers;
  - L{mdmd.testing.windows.csr}: its PKCS#10 requests, in both shapes real
    clients produce, and the PKCS#7 of a renewal;
  - L{mdmd.testing.windows.provisioning}: the checks it makes on the
    provisioning document before relying on it.
"""
