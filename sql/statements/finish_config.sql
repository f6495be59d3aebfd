-- A run completed: the config's new position and schedule. $1 config id, $2 position.
UPDATE {schema}.sync_configs
   SET position = $2, last_run_at = now(), next_run_at = now() + sync_interval,
       consecutive_failures = 0, position_instance = (SELECT i.id FROM {schema}.sync_instance i)
 WHERE id = $1
