"""Apple device-management wire formats shared by every party.

Pure codecs: no I/O, no Flask, no threads. State and serving live in :mod:`mdm.platform`.
"""
