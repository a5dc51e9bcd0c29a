-- A job created by replaying an event through the routes (the admin API's replay), rather than
-- by routing it when it arrived.
ALTER TABLE jobs ADD COLUMN replay INTEGER NOT NULL DEFAULT 0;
