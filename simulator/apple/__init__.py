"""Apple's services as the MDM vendor meets them: the DEP web service, the business portal, activation, push.

They share one SQLite store (:mod:`simulator.apple.store`) because in Apple's world they share one
database of organisations, MDM servers and devices: "Assign to Server" in the portal is what the DEP
web service then reports to that server. Each party keeps its tables and SQL in its own ``store``
module; the device records the portal, DEP and activation all write live in
:mod:`simulator.apple.devices`, the one place a device row changes.
"""
