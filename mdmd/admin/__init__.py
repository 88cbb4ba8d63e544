"""
The operator surfaces: the JSON admin API and mdmctl, its command-line client.
"""
