-- Entities that failed before went through: their open errors are resolved.
-- $1 config id, $2 source ids, $3 target ids.
UPDATE {schema}.sync_errors SET resolved = true, retried_at = now()
 WHERE config_id = $1 AND NOT resolved AND (source_id = ANY($2) OR target_id = ANY($3))
