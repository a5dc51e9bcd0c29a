-- Whether the job a request puts back was dead, so the running server's count of dead jobs
-- (`switchboard_jobs{state="dead"}`) goes down only for those: a replay's new jobs were never
-- dead.
ALTER TABLE job_requests ADD COLUMN was_dead INTEGER NOT NULL DEFAULT 0;
