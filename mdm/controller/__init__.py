"""Intune's DEP connector: token keys and upload, enrollment profiles, syncs with limits, assignments.

``store`` (tables) → ``service.Controller`` (the rules) → ``http.create_app`` (Graph-style routes);
``depclient`` speaks to Apple's DEP web service, ``profiles`` and ``sync`` hold pure rules.
"""
