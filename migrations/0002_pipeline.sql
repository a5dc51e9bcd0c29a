-- What happens after an event is stored: routing state, per-conversation buffers, the durable
-- job queue and the outbound messages jobs send. Times are Unix milliseconds.

-- NULL until the dispatcher has routed the event. Events stored before routing existed count as
-- routed, so upgrading does not answer old messages.
ALTER TABLE events ADD COLUMN routed_at INTEGER;
UPDATE events SET routed_at = received_at;
CREATE INDEX events_unrouted ON events (id) WHERE routed_at IS NULL;

-- One open batch per route and conversation.
CREATE TABLE buffers (
    route        TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    first_at     INTEGER NOT NULL,
    last_at      INTEGER NOT NULL,
    messages     INTEGER NOT NULL,
    flush_at     INTEGER NOT NULL,
    PRIMARY KEY (route, conversation)
);
CREATE INDEX buffers_flush_at ON buffers (flush_at);

CREATE TABLE buffered_events (
    route        TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    event_id     INTEGER NOT NULL REFERENCES events (id),
    PRIMARY KEY (route, conversation, event_id)
);

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    route        TEXT    NOT NULL,
    handler      TEXT    NOT NULL,
    webhook      TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    conversation TEXT,
    -- jobs with the same key run one at a time, in (order_ts, order_seq) order
    ordering_key TEXT,
    order_ts     INTEGER NOT NULL,
    order_seq    INTEGER NOT NULL,
    -- JSON array of events.id, oldest first
    event_ids    TEXT    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at       INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_until  INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX jobs_runnable ON jobs (state, run_at);
-- Claim order over unfinished jobs only: claiming scans this in order and stops at the first
-- job that may run, however many finished jobs the table holds.
CREATE INDEX jobs_active ON jobs (run_at, order_ts, order_seq) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_ordering ON jobs (ordering_key, state);

-- Messages a job sends, recorded before sending and marked with WhatsApp's id once confirmed,
-- so a retried job never sends a confirmed message again.
CREATE TABLE outbound (
    id              INTEGER PRIMARY KEY,
    job_id          INTEGER NOT NULL REFERENCES jobs (id),
    seq             INTEGER NOT NULL,
    phone_number_id TEXT    NOT NULL,
    action          TEXT    NOT NULL CHECK (action IN ('send', 'mark_read')),
    body            TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent')),
    wamid           TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    UNIQUE (job_id, seq)
);
