"""
Tests of desired state, L{mdmd.desired}: profiles, groups, the reconciliation engine and its store.
"""
