"""
The built-in CA: certificate issuance and revocation, TLS options, the CRL.
"""
