-- A pair of a run failed: close its open errors and record this one.
-- $1 config id, $2 run id, $3 source id, $4 target id, $5 message, $6 SQLSTATE.
WITH old AS (UPDATE {schema}.sync_errors SET resolved = true
              WHERE config_id = $1 AND NOT resolved
                AND (source_id = $3 OR target_id = $4))
INSERT INTO {schema}.sync_errors (config_id, run_id, source_id, target_id, message, sqlstate)
VALUES ($1, $2, $3, $4, $5, $6)
