"""Apple's Business API (``api-business.apple.com``; ``api-school.apple.com`` for a school): orgDevices,
mdmServers and orgDeviceActivities over the same devices and servers the portal and DEP share."""
