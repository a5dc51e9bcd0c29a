-- The loop guard looks up a failed message's wamid among the templates this server sent.
CREATE INDEX outbound_wamid ON outbound (wamid) WHERE wamid IS NOT NULL;
