"""
OMA DM 1.2 management: the command queue, the session engine, and the DM endpoint.
"""
