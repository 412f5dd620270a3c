"""The customer's identity provider: an ADFS-like WS-Trust 1.3 Username/Mixed endpoint over Faker users.

Layers (DESIGN.md rule 2): the wire format is the shared codec :mod:`mdm.protocol.wstrust` (the MDM
server's client speaks it too); here live only the IdP's own parts: :mod:`.service` (users, password
checks, token rules), :mod:`.store` (SQLite), :mod:`.http` (Flask).
"""
