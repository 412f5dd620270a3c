"""Intune's DEP connector: token keys and upload, enrollment profiles, syncs with limits, assignments.

``store`` (tables and every query) → the rule modules (``tokens``, ``syncing``, ``enrollment_profiles``,
``assignments``, ``devices``, ``events``, ``pushcert``) → ``service.Controller`` (the front the world
builds) → ``http.create_app`` (Graph-style routes). ``depclient`` speaks to Apple's DEP web service,
``apple`` makes its clients per token; ``profiles``, ``sync_rules`` and ``odata`` hold pure rules.
"""
