-- Indexes for retention (src/retention/): each deletion finds its oldest rows by index instead
-- of scanning the table. Times are Unix milliseconds.
CREATE INDEX events_received_at ON events (received_at);
CREATE INDEX quarantine_received_at ON quarantine (received_at);
-- Finished jobs by when they finished; partial, so queued and running jobs are not in them.
CREATE INDEX jobs_done_finished_at ON jobs (finished_at) WHERE state = 'done';
CREATE INDEX jobs_dead_finished_at ON jobs (finished_at) WHERE state = 'dead';
