-- Reading changes by position, and what bad positions get.
SELECT try($$SELECT * FROM sync_changes(NULL, 'garbage')$$) AS error;
SELECT try($$SELECT * FROM sync_changes('100:104:', '10:14:')$$) AS error;
SELECT try($$SELECT * FROM sync_changes(NULL, NULL)$$) AS error;
SELECT try($$SELECT sync_prune('-1 day')$$) AS error;
SELECT sync_position() ~ '^[0-9]+:[0-9]+:[0-9,]*$' AS looks_like_a_snapshot;
SELECT (sync_engine_build_info() ? 'profile') AND (sync_engine_build_info() ? 'version') AS build_info;
SELECT count(*) AS workers FROM sync_workers;
-- only the extension's owner wakes the launcher
CREATE ROLE regress_nobody;
SET ROLE regress_nobody;
SELECT try($$SELECT sync_wake_launcher()$$) AS error;
RESET ROLE;
DROP ROLE regress_nobody;
