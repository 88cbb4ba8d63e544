"""
mdmd's state, in ZODB: persistent models, opening a database from a URI,
running units of work on a dedicated thread pool, indexes of what falls due,
and the upkeep of the embedded FileStorage (packing, saving its index).
"""
