"""The MDM vendor's side: wire protocol, MDM server, DEP controller and dashboard."""
