-- The conflicts of a batch, with both sides' values (a losing value is never lost).
-- $1 config id, $2 run id, $3 strategy name, $4 jsonb array of
-- objects with keys s, t, kind, fields, sv, tv, bv, res, rv.
INSERT INTO {schema}.sync_conflicts (config_id, run_id, source_id, target_id, kind, fields,
    source_value, target_value, base_value, strategy, resolution, resolved_value, resolved_by,
    resolved_at)
SELECT $1, $2, x->>'s', x->>'t', x->>'kind',
       ARRAY(SELECT jsonb_array_elements_text(x->'fields')),
       x->'sv', x->'tv', x->'bv', $3, x->>'res',
       CASE WHEN x->>'res' = 'pending' THEN NULL ELSE x->'rv' END,
       CASE WHEN x->>'res' = 'pending' THEN NULL ELSE 'strategy:' || $3 END,
       CASE WHEN x->>'res' = 'pending' THEN NULL ELSE now() END
  FROM jsonb_array_elements($4) x
