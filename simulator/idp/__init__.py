"""The customer's identity provider: an ADFS-like WS-Trust 1.3 Username/Mixed endpoint over Faker users.

Layers (DESIGN.md rule 2): :mod:`.wstrust` (pure SOAP/WS-Trust/SAML formats, also the client side),
:mod:`.service` (users, password checks, token rules), :mod:`.store` (SQLite), :mod:`.http` (Flask).
"""
