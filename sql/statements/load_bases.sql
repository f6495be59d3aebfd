-- The links (and bases) of these source keys. $1 config id, $2 source ids.
SELECT l.source_id, l.target_id, l.base::json
  FROM unnest($2::text[]) AS x(id)
  JOIN {schema}.sync_links l ON l.config_id = $1 AND l.source_id = x.id
