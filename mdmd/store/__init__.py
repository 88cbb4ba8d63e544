"""
mdmd's state, in ZODB: persistent models, opening a database from a URI, and
running units of work on a dedicated thread pool.
"""
