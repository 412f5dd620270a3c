"""Apple's DEP web service (``mdmenrollment.apple.com``): rules in ``service``, HTTP in ``http``."""
