-- Catch-up after an outage (docs/CATCH_UP.md): one row per business number whose history was
-- read from Kapso. Times are Unix milliseconds.
CREATE TABLE catch_up (
    phone_number_id TEXT    PRIMARY KEY,
    -- the newest message time (its own timestamp) seen by a run that read to the end; the next
    -- run reads from here minus catch_up.overlap. NULL until such a run.
    checkpoint      INTEGER,
    last_run_at     INTEGER NOT NULL,
    -- 'ok', or 'failed: <reason>'
    last_result     TEXT    NOT NULL,
    -- events the last run stored (backfilled)
    last_found      INTEGER NOT NULL DEFAULT 0
);
