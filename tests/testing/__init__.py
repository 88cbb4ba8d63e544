"""
Tests of the test kit, L{mdmd.testing}: its fakes behave like what they fake.
"""
