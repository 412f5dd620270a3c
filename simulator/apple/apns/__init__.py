"""Apple's push notification gateway (fake): provider API for MDM servers, delivery to simulated devices.

Apple's code: it imports only ``mdm.protocol``, never the MDM vendor's server.
"""
