-- A run starts. $1 config id, $2 started_by. Returns the run id.
INSERT INTO {schema}.sync_runs (config_id, started_by) VALUES ($1, $2) RETURNING id
