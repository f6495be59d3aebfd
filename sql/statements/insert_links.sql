-- New links. $1 config id, $2 source ids, $3 target ids, $4 bases (jsonb[]);
-- {on_conflict}: "ON CONFLICT DO NOTHING" or nothing. Returns the source ids inserted.
INSERT INTO {schema}.sync_links (config_id, source_id, target_id, base, base_checksum)
SELECT $1, x.s, x.t, x.b, {checksum} FROM unnest($2::text[], $3::text[], $4::jsonb[]) x(s, t, b)
{on_conflict} RETURNING source_id
