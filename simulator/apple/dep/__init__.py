"""Apple's DEP web service (``mdmenrollment.apple.com``): rules in ``service``, SQL in ``store``, HTTP in
``http``; request shapes (``requests``), profiles (``profiles``), OAuth (``oauth``) and cursors are pure code."""
