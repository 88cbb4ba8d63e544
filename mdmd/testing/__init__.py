"""
Fakes shared by mdmd's tests and benchmarks (importable, never used by the daemon).
"""
