"""
SyncML 1.2 as OMA DM uses it: a typed message model and its XML and WBXML codecs.
"""
