-- A run completed. $1 run id, $2 status ('success' or 'partial'), $3 result (jsonb).
UPDATE {schema}.sync_runs SET completed_at = clock_timestamp(), status = $2, result = $3 WHERE id = $1
