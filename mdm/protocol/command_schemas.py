"""Every MDM command Apple documents and its top-level keys: ``RequestType → {key: (type, required)}``.

A table of data, kept apart from the codec in :mod:`mdm.protocol.commands`. It was generated once
from Apple's published command descriptions (top-level keys only); ``fixtures/mdm/commands.json``
lists the same RequestTypes and required keys, and a test keeps the two in step.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["COMMAND_SCHEMAS"]

datetime = _dt.datetime  # the name the table uses for <date>

#: RequestType → {key: (type, required)}; generated once; edit together with fixtures/mdm/commands.json.
_SCHEMAS: dict[str, dict[str, tuple[type, bool]]] = {
    "AccountConfiguration": {
        "SkipPrimarySetupAccountCreation": (bool, False),
        "SetPrimarySetupAccountAsRegularUser": (bool, False),
        "PrimaryAccountFullName": (str, False),
        "PrimaryAccountUserName": (str, False),
        "DontAutoPopulatePrimaryAccountInfo": (bool, False),
        "LockPrimaryAccountInfo": (bool, False),
        "AutoSetupAdminAccounts": (list, False),
        "ManagedLocalUserShortName": (str, False),
    },
    "ActiveNSExtensions": {
        "FilterExtensionPoints": (list, False),
    },
    "NSExtensionMappings": {},
    "InstallEnterpriseApplication": {
        "Manifest": (dict, False),
        "ManifestURL": (str, False),
        "ManifestURLPinningCerts": (list, False),
        "PinningRevocationCheckRequired": (bool, False),
        "InstallAsManaged": (bool, False),
        "ManagementFlags": (int, False),
        "Configuration": (dict, False),
        "ChangeManagementState": (str, False),
        "iOSApp": (bool, False),
    },
    "InstallApplication": {
        "iTunesStoreID": (int, False),
        "Identifier": (str, False),
        "Options": (dict, False),
        "ManifestURL": (str, False),
        "ManagementFlags": (int, False),
        "Configuration": (dict, False),
        "Attributes": (dict, False),
        "ChangeManagementState": (str, False),
        "InstallAsManaged": (bool, False),
        "iOSApp": (bool, False),
    },
    "InstalledApplicationList": {
        "Identifiers": (list, False),
        "ManagedAppsOnly": (bool, False),
        "Items": (list, False),
    },
    "InviteToProgram": {
        "ProgramID": (str, True),
        "InvitationURL": (str, True),
    },
    "ManagedApplicationList": {
        "Identifiers": (list, False),
    },
    "ApplyRedemptionCode": {
        "Identifier": (str, True),
        "RedemptionCode": (str, True),
    },
    "RemoveApplication": {
        "Identifier": (str, True),
    },
    "ValidateApplications": {
        "Identifiers": (list, False),
    },
    "CertificateList": {
        "ManagedOnly": (bool, False),
    },
    "DeclarativeManagement": {
        "Data": (bytes, False),
    },
    "ActivationLockBypassCode": {},
    "ClearActivationLockBypassCode": {},
    "DeviceConfigured": {},
    "EraseDevice": {
        "PreserveDataPlan": (bool, False),
        "DisallowProximitySetup": (bool, False),
        "PIN": (str, False),
        "ObliterationBehavior": (str, False),
        "ReturnToService": (dict, False),
    },
    "RefreshCellularPlans": {
        "eSIMServerURL": (str, True),
    },
    "DeviceLock": {
        "Message": (str, False),
        "PhoneNumber": (str, False),
        "PIN": (str, False),
    },
    "DisableLostMode": {},
    "EnableLostMode": {
        "Message": (str, False),
        "PhoneNumber": (str, False),
        "Footnote": (str, False),
    },
    "DeviceLocation": {},
    "PlayLostModeSound": {},
    "RestartDevice": {
        "RebuildKernelCache": (bool, False),
        "KextPaths": (list, False),
        "NotifyUser": (bool, False),
    },
    "ClearRestrictionsPassword": {},
    "Restrictions": {
        "ProfileRestrictions": (bool, False),
    },
    "ShutDownDevice": {},
    "ContentCachingInformation": {},
    "DeviceInformation": {
        "Queries": (list, True),
        "DeviceAttestationNonce": (bytes, False),
    },
    "SecurityInfo": {},
    "LOMDeviceRequest": {
        "RequestList": (list, True),
    },
    "LOMSetupRequest": {},
    "ManagedApplicationAttributes": {
        "Identifiers": (list, True),
    },
    "ManagedApplicationConfiguration": {
        "Identifiers": (list, True),
    },
    "ManagedApplicationFeedback": {
        "Identifiers": (list, True),
        "DeleteFeedback": (bool, False),
    },
    "InstallMedia": {
        "iTunesStoreID": (int, False),
        "MediaURL": (str, False),
        "MediaType": (str, True),
        "PersistentID": (str, False),
        "Kind": (str, False),
        "Version": (str, False),
        "Author": (str, False),
        "Title": (str, False),
    },
    "ManagedMediaList": {},
    "RemoveMedia": {
        "MediaType": (str, True),
        "iTunesStoreID": (str, False),
        "PersistentID": (str, False),
    },
    "RequestMirroring": {
        "DestinationName": (str, False),
        "DestinationDeviceID": (str, False),
        "ScanTime": (int, False),
        "Password": (str, False),
    },
    "StopMirroring": {},
    "ClearPasscode": {
        "UnlockToken": (bytes, True),
    },
    "SetFirmwarePassword": {
        "CurrentPassword": (str, False),
        "NewPassword": (str, True),
        "AllowOroms": (bool, False),
    },
    "VerifyFirmwarePassword": {
        "Password": (str, True),
    },
    "SetRecoveryLock": {
        "CurrentPassword": (str, False),
        "NewPassword": (str, True),
    },
    "VerifyRecoveryLock": {
        "Password": (str, True),
    },
    "RequestUnlockToken": {},
    "InstallProfile": {
        "Payload": (bytes, True),
    },
    "ProfileList": {
        "ManagedOnly": (bool, False),
    },
    "InstallProvisioningProfile": {
        "ProvisioningProfile": (bytes, True),
    },
    "ProvisioningProfileList": {
        "ManagedOnly": (bool, False),
    },
    "RemoveProvisioningProfile": {
        "UUID": (str, True),
    },
    "RemoveProfile": {
        "Identifier": (str, True),
    },
    "DisableRemoteDesktop": {},
    "EnableRemoteDesktop": {},
    "RotateFileVaultKey": {
        "KeyType": (str, True),
        "FileVaultUnlock": (dict, True),
        "NewCertificate": (bytes, False),
        "ReplyEncryptionCertificate": (bytes, False),
    },
    "SetAutoAdminPassword": {
        "GUID": (str, True),
        "passwordHash": (bytes, True),
    },
    "Settings": {
        "Settings": (list, True),
    },
    "AvailableOSUpdates": {},
    "ScheduleOSUpdateScan": {
        "Force": (bool, False),
    },
    "ScheduleOSUpdate": {
        "Updates": (list, True),
    },
    "OSUpdateStatus": {},
    "UserConfigured": {},
    "DeleteUser": {
        "UserName": (str, False),
        "ForceDeletion": (bool, False),
        "DeleteAllUsers": (bool, False),
    },
    "UserList": {},
    "LogOutUser": {},
    "UnlockUserAccount": {
        "UserName": (str, True),
    },
}

COMMAND_SCHEMAS: Mapping[str, Mapping[str, tuple[type, bool]]] = MappingProxyType(
    {k: MappingProxyType(v) for k, v in _SCHEMAS.items()}
)
del _SCHEMAS

