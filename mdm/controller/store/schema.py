"""The controller's tables: DEP tokens (``depOnboardingSettings``), enrollment profiles, imported devices,
the UDID → serial map of MDM events, and the tenant's push certificate.

Migration *n* runs once (``PRAGMA user_version``); never edit one that has shipped, add another.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

MIGRATIONS = [
    """
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        token_name TEXT,
        apple_identifier TEXT,
        token_type TEXT NOT NULL DEFAULT 'none',
        token_expiration REAL,
        created_at REAL NOT NULL,
        modified_at REAL NOT NULL,
        key_pem TEXT,
        cert_pem TEXT,
        consumer_key TEXT,
        consumer_secret TEXT,
        access_token TEXT,
        access_secret TEXT,
        server_uuid TEXT,
        server_name TEXT,
        org_name TEXT,
        session_token TEXT,

        sync_status TEXT NOT NULL DEFAULT 'idle',
        sync_id TEXT,
        sync_kind TEXT,
        sync_manual INTEGER NOT NULL DEFAULT 0,
        sync_triggered_at REAL,
        sync_deadline REAL,
        last_manual_at REAL,
        last_success_at REAL,
        last_full_at REAL,
        last_kind TEXT,
        last_error_code TEXT,
        last_error_message TEXT,
        cursor TEXT,
        force_full INTEGER NOT NULL DEFAULT 0,
        progress_pages INTEGER NOT NULL DEFAULT 0,
        progress_devices INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE profiles (
        id TEXT PRIMARY KEY,
        token_id TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
        settings TEXT NOT NULL,
        apple_json TEXT NOT NULL,
        profile_uuid TEXT NOT NULL,
        is_default INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        modified_at REAL NOT NULL
    );
    CREATE INDEX profiles_by_token ON profiles (token_id, created_at);

    CREATE TABLE devices (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        token_id TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
        serial TEXT NOT NULL,
        description TEXT,
        model TEXT,
        color TEXT,
        os TEXT,
        device_family TEXT,
        apple_profile_status TEXT,
        apple_profile_uuid TEXT,
        requested_profile_id TEXT,
        requested_at REAL,
        is_supervised INTEGER NOT NULL DEFAULT 0,
        is_deleted INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        enrollment_state TEXT NOT NULL DEFAULT 'notContacted',
        last_contacted REAL,
        udid TEXT,
        assignment_status TEXT,
        retry_profile_id TEXT,
        retry_at REAL,
        seen_sync TEXT,
        UNIQUE (token_id, serial)
    );
    CREATE INDEX devices_by_serial ON devices (serial);
    CREATE INDEX devices_retry ON devices (retry_at) WHERE retry_at IS NOT NULL;

    CREATE TABLE udids (udid TEXT PRIMARY KEY, serial TEXT NOT NULL) WITHOUT ROWID;
    """,
    """
    -- The tenant's Apple MDM push certificate (one per tenant, as in Intune): the key and CSR waiting
    -- for Apple's certificate, the certificate in use and its key, and the last upload's outcome.
    CREATE TABLE push_certificate (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        graph_id TEXT NOT NULL,
        pending_key_pem TEXT,
        pending_csr_pem TEXT,
        key_pem TEXT,
        cert_pem TEXT,
        apple_identifier TEXT,
        topic TEXT,
        serial TEXT,
        not_after REAL,
        modified_at REAL,
        upload_status TEXT NOT NULL DEFAULT 'notUploaded',
        failure_reason TEXT,
        previous_topic TEXT,
        topic_changed_at REAL
    );
    -- The push topic each device enrolled with (from its Authenticate/TokenUpdate): a device whose
    -- topic is not the current certificate's cannot be woken until it enrolls again.
    ALTER TABLE devices ADD COLUMN mdm_topic TEXT;
    """,
    """
    -- Graph types lastSyncErrorCode as an integer (the HTTP status Apple answered a failed sync with);
    -- last_error_code keeps the reason (lastSyncErrorReason).
    ALTER TABLE tokens ADD COLUMN last_error_number INTEGER;
    """,
]
