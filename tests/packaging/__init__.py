"""
Tests of the Debian package: its files (always) and the built package installed and run (as root).
"""
