"""Apple's Push Certificates Portal (fake): MDM push certificates for a vendor-signed CSR.

In real life an MDM customer signs in at ``identity.apple.com`` with an Apple ID, uploads the CSR their
MDM vendor signed, and downloads a push certificate whose subject UID is the push topic
(``com.apple.mgmt.External.<uuid>``). Renewing with the same Apple ID keeps the topic; a new
certificate means a new topic, and devices enrolled under the old one can no longer be woken.

Apple's code: it imports only ``mdm.protocol``, never the MDM vendor's server or controller.
"""
