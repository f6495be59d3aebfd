-- New bases of kept links. $1 config id, $2 source ids, $3 bases (jsonb[]).
UPDATE {schema}.sync_links l SET base = x.b, base_checksum = {checksum}, updated_at = now()
  FROM unnest($2::text[], $3::jsonb[]) x(s, b)
 WHERE l.config_id = $1 AND l.source_id = x.s
