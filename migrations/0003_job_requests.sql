-- Requests from other processes (the command line) to the running server's in-memory job
-- schedule: "job N was put back in the queue, schedule it". The server takes them every
-- `jobs.poll_interval_ms`; an empty table costs one index probe.
CREATE TABLE job_requests (
    job_id       INTEGER PRIMARY KEY REFERENCES jobs (id),
    requested_at INTEGER NOT NULL
);
