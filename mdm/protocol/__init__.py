"""Apple device-management wire formats shared by every party (pure code: no I/O, no Flask)."""
