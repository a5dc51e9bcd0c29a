-- Routes an operator paused (docs/ADMIN.md): their jobs are still created, but none starts
-- until the route is resumed. Times are Unix milliseconds.
CREATE TABLE route_pauses (
    route     TEXT    PRIMARY KEY,
    paused_at INTEGER NOT NULL,
    -- the surface that paused it: `admin api`, `console` or `cli`
    paused_by TEXT    NOT NULL
);

-- Requests from other processes (the command line) to the running server: "route_pauses
-- changed, read it again". Taken every `jobs.poll_interval_ms`, like `job_requests`; an empty
-- table costs one probe.
CREATE TABLE route_pause_requests (
    route        TEXT    PRIMARY KEY,
    requested_at INTEGER NOT NULL
);
