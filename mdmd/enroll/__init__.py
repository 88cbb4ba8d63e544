"""
Windows enrollment (MS-MDE2 on-premise): discovery, policy, certificate
enrollment and the provisioning document, and the users allowed to enroll.
"""
