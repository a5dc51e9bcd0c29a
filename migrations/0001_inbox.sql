-- The inbox: every authenticated delivery, the events it carried (deduplicated) and anything
-- that could not be understood (quarantine). Times are Unix milliseconds unless named otherwise.

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    webhook         TEXT    NOT NULL,
    received_at     INTEGER NOT NULL,
    body_bytes      INTEGER NOT NULL,
    idempotency_key TEXT,
    event_header    TEXT,
    payload_version TEXT,
    batch           INTEGER NOT NULL,
    events          INTEGER NOT NULL DEFAULT 0,
    stored          INTEGER NOT NULL DEFAULT 0,
    duplicates      INTEGER NOT NULL DEFAULT 0,
    quarantined     INTEGER NOT NULL DEFAULT 0,
    result          TEXT    NOT NULL DEFAULT 'pending'
);
CREATE INDEX deliveries_received_at ON deliveries (received_at);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    -- deliveries.id; no foreign key: the inbox writer writes a group's events first and their
    -- delivery rows, which carry the final counts, last, in the same transaction
    delivery_id     INTEGER NOT NULL,
    webhook         TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    dedupe_key      TEXT    NOT NULL,
    payload_version TEXT    NOT NULL,
    phone_number_id TEXT,
    conversation_id TEXT,
    message_id      TEXT,
    message_type    TEXT,
    direction       TEXT,
    -- the event's own time (message timestamp), Unix seconds, when the payload has one
    occurred_at     INTEGER,
    received_at     INTEGER NOT NULL,
    idempotency_key TEXT,
    -- NULL when the event was fully understood; otherwise a comma-separated list such as
    -- 'unknown_event_type' or 'missing_identifier'
    flags           TEXT,
    payload         TEXT    NOT NULL
);
CREATE UNIQUE INDEX events_dedupe ON events (event_type, dedupe_key);
CREATE INDEX events_conversation ON events (conversation_id, occurred_at);

CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY,
    -- deliveries.id; no foreign key: the inbox writer writes a group's events first and their
    -- delivery rows, which carry the final counts, last, in the same transaction
    delivery_id     INTEGER NOT NULL,
    webhook         TEXT    NOT NULL,
    received_at     INTEGER NOT NULL,
    reason          TEXT    NOT NULL,
    event_header    TEXT,
    idempotency_key TEXT,
    body_sha256     TEXT    NOT NULL,
    body            BLOB    NOT NULL
);
CREATE UNIQUE INDEX quarantine_body ON quarantine (webhook, body_sha256);
