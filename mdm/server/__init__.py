"""The MDM vendor's server: DEP enrollment, check-in, command queue, APNs pushes, command API.

``store`` (SQLite schema) ← ``service`` (the rules; takes a store and a clock) ← ``http`` (Flask).
"""
