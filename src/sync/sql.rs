//! The text of the statements a run builds for its tables: pure functions of the
//! config (names quoted here, values always passed as parameters), tested on their
//! text. Statements that only name the extension's own tables are in
//! `sql/statements/*.sql` (`statement`).

use crate::capture::changes;
use crate::capture::endpoints::Endpoint;
use crate::core::cursor::Window;
use crate::core::merge::Strategy;
use crate::core::plan::WHOLE_ENTITY;
use crate::pg::quote::{quote_ident, quote_literal};
use crate::sync::config::Config;

/// Change records per entity and side the work list carries for per-field times.
pub const CHANGE_TIDS: i64 = 64;

/// A statement of `sql/statements/` with the extension schema (quoted) put in for
/// `{schema}`.
pub fn statement(text: &str, schema: &str) -> String {
    fill(text, &[("schema", schema)])
}

/// `template` with each `{name}` of `values` replaced by its value, in one pass: a
/// value that itself contains `{...}` (a schema named `{checksum}`) stays as it is.
/// A `{` not starting a known name is kept.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let hit = values.iter().find(|(name, _)| {
            tail.len() > name.len() + 1
                && tail[1..].starts_with(name)
                && tail[1 + name.len()..].starts_with('}')
        });
        match hit {
            Some((name, value)) => {
                out.push_str(value);
                rest = &tail[name.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub mod statements {
    //! The static statements of a run (`sql/statements/*.sql`).
    pub const RECORD_ERROR: &str = include_str!("../../sql/statements/record_error.sql");
    pub const RESOLVE_ERRORS: &str = include_str!("../../sql/statements/resolve_errors.sql");
    pub const INSERT_CONFLICTS: &str = include_str!("../../sql/statements/insert_conflicts.sql");
    pub const UPDATE_BASES: &str = include_str!("../../sql/statements/update_bases.sql");
    pub const INSERT_LINKS: &str = include_str!("../../sql/statements/insert_links.sql");
    pub const LOAD_BASES: &str = include_str!("../../sql/statements/load_bases.sql");
    pub const FINISH_CONFIG: &str = include_str!("../../sql/statements/finish_config.sql");
    pub const FINISH_RUN: &str = include_str!("../../sql/statements/finish_run.sql");
    pub const START_RUN: &str = include_str!("../../sql/statements/start_run.sql");
}

/// SQL for the checksum stored with a link's base (`sync_links.base_checksum`): the
/// sha256 (hex) of the base's jsonb text, which is canonical (keys in jsonb's order,
/// one spelling per value). `expr` is a jsonb expression.
pub fn base_checksum_sql(expr: &str) -> String {
    format!("encode(sha256(convert_to(({expr})::text, 'UTF8')), 'hex')")
}

/// `cols` quoted, each after `prefix` (`r.`), comma-separated.
pub fn col_list(cols: &[String], prefix: &str) -> String {
    cols.iter()
        .map(|c| format!("{prefix}{}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A key as text the way the capture trigger records it: through the type's output
/// function (`format('%s', ..)`), not a `::text` cast, which differs for char(n), inet...
pub fn key_text(e: &Endpoint, alias: &str) -> String {
    format!("format('%s', {alias}.{})", quote_ident(&e.key_column))
}

/// First run, or a reconcile (a position from another database): every row of both
/// tables takes part (plus links whose rows are gone), a linked pair with its link, so
/// the merge compares both sides with the base.
pub fn initial_work_sql(cfg: &Config, schema: &str) -> String {
    let (s, t) = (&cfg.source, &cfg.target);
    format!(
        "SELECT w.s_id, w.t_id, NULL::bigint, NULL::bigint, NULL::text[], b.ctid::text, NULL::bigint FROM (
            SELECT {sk} AS s_id, l.target_id AS t_id FROM {st} s
              LEFT JOIN {schema}.sync_links l ON l.config_id = $1 AND l.source_id = {sk}
            UNION
            SELECT l.source_id, {tk} FROM {tt} t
              LEFT JOIN {schema}.sync_links l ON l.config_id = $1 AND l.target_id = {tk}
            UNION
            SELECT source_id, target_id FROM {schema}.sync_links WHERE config_id = $1 AND $2::text IS NOT NULL
         ) w
         LEFT JOIN {schema}.sync_links b ON b.config_id = $1 AND b.source_id = w.s_id AND b.target_id = w.t_id
         ORDER BY w.s_id NULLS LAST, w.t_id",
        sk = key_text(s, "s"),
        tk = key_text(t, "t"),
        st = s.table,
        tt = t.table,
    )
}

/// Later runs: the entities with change records in the window (not written by this
/// config), plus entities whose last apply failed; one row per changed side of a pair
/// (folded together by the reader), with that side's latest change time and, when
/// the strategy compares times, the change records' ctids.
pub fn work_sql(cfg: &Config, schema: &str, w: &Window) -> String {
    let lit = quote_literal;
    let (s, t) = (&cfg.source, &cfg.target);
    let tids = if cfg.strategy == Strategy::LatestWins {
        format!("(array_agg(c.ctid::text))[1:{CHANGE_TIDS}]")
    } else {
        "NULL::text[]".to_string()
    };
    format!(
        "WITH ch AS MATERIALIZED (
            SELECT (c.system = {ss} AND c.entity_type = {se}) AS is_src, c.entity_id,
                   (extract(epoch FROM max(c.changed_at)) * 1000000)::bigint AS last, {tids} AS tids,
                   count(*) AS n
              FROM {schema}.change_log c
             WHERE {pred}
               AND ((c.system = {ss} AND c.entity_type = {se}) OR (c.system = {ts} AND c.entity_type = {te}))
               AND c.origin IS DISTINCT FROM $2
             GROUP BY 1, 2
         ), ids AS (
            SELECT is_src, entity_id, last, tids, n FROM ch
            UNION ALL SELECT true, source_id, NULL, NULL, NULL FROM {schema}.sync_errors
                   WHERE config_id = $1 AND NOT resolved AND source_id IS NOT NULL
            UNION ALL SELECT false, target_id, NULL, NULL, NULL FROM {schema}.sync_errors
                   WHERE config_id = $1 AND NOT resolved AND target_id IS NOT NULL
         )
         SELECT i.entity_id, l.target_id, i.last, NULL::bigint, i.tids, l.ctid::text, i.n
           FROM ids i LEFT JOIN {schema}.sync_links l ON l.config_id = $1 AND l.source_id = i.entity_id
          WHERE i.is_src
         UNION ALL
         SELECT l.source_id, i.entity_id, NULL, i.last, i.tids, l.ctid::text, i.n
           FROM ids i LEFT JOIN {schema}.sync_links l ON l.config_id = $1 AND l.target_id = i.entity_id
          WHERE NOT i.is_src
         ORDER BY 1 NULLS LAST, 2",
        pred = changes::window_predicate(w, "c"),
        ss = lit(&s.system),
        se = lit(&s.entity_type),
        ts = lit(&t.system),
        te = lit(&t.entity_type),
    )
}

/// Pending manual conflicts of the given entities: `$1` config id, `$2` source ids,
/// `$3` target ids; columns source_id, target_id, fields (`WHOLE_ENTITY` alone for a
/// conflict about the whole entity).
pub fn pending_sql(schema: &str) -> String {
    format!(
        "SELECT source_id, target_id, CASE WHEN kind = 'update_update' THEN fields ELSE ARRAY[{whole}] END
           FROM {schema}.sync_conflicts
          WHERE config_id = $1 AND resolution = 'pending' AND (source_id = ANY($2) OR target_id = ANY($3))",
        whole = quote_literal(WHOLE_ENTITY),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mapping::Mapping;
    use crate::core::merge::Direction;
    use crate::core::plan::Shape;
    use crate::core::types::Sides;
    use pgrx::pg_sys;

    fn endpoint(system: &str, table: &str, key: &str) -> Endpoint {
        Endpoint {
            id: 1,
            system: system.into(),
            entity_type: "contacts".into(),
            table: table.into(),
            key_column: key.into(),
            key_type: "integer".into(),
            columns: vec![key.into(), "email".into()],
            column_types: vec!["integer".into(), "text".into()],
            column_base_types: vec!["integer".into(), "text".into()],
            column_inputs: vec![],
            key_default: None,
            key_identity: false,
            owner: pg_sys::Oid::INVALID,
            relid: pg_sys::Oid::INVALID,
        }
    }

    fn config(strategy: Strategy) -> Config {
        let mapping =
            Mapping::parse(&serde_json::json!([{"source": "email", "target": "email"}])).unwrap();
        Config::for_tests(
            7,
            endpoint("it's crm", r#""Sales"."Crm; x""#, r#"Key "col""#),
            endpoint("hub", "hub.contacts", "id"),
            Shape {
                mapping,
                kinds: Sides::default(),
            },
            strategy,
            Direction::Bidirectional,
        )
    }

    #[test]
    fn templates_fill_each_name_once() {
        assert_eq!(
            fill(
                "UPDATE {schema}.t SET c = {checksum} {on_conflict}",
                &[("schema", "\"s\""), ("checksum", "x"), ("on_conflict", "")]
            ),
            "UPDATE \"s\".t SET c = x "
        );
        // a value that looks like a placeholder is not filled again
        assert_eq!(
            fill(
                "{schema}.{checksum}",
                &[("schema", "\"{checksum}\""), ("checksum", "c")]
            ),
            "\"{checksum}\".c"
        );
        // unknown and unclosed braces stay
        assert_eq!(fill("{x} {schema", &[("schema", "s")]), "{x} {schema");
        assert_eq!(
            statement("SELECT 1 FROM {schema}.sync_links", "\"my schema\""),
            "SELECT 1 FROM \"my schema\".sync_links"
        );
        for s in [
            statements::RECORD_ERROR,
            statements::RESOLVE_ERRORS,
            statements::INSERT_CONFLICTS,
            statements::LOAD_BASES,
            statements::START_RUN,
            statements::FINISH_RUN,
            statements::FINISH_CONFIG,
        ] {
            assert!(s.contains("{schema}."), "{s}");
            assert!(!statement(s, "x").contains('{'), "{s}");
        }
        for s in [statements::UPDATE_BASES, statements::INSERT_LINKS] {
            let done = fill(
                s,
                &[("schema", "x"), ("checksum", "c"), ("on_conflict", "")],
            );
            assert!(!done.contains('{'), "{done}");
        }
    }

    #[test]
    fn keys_and_columns_are_quoted() {
        let e = endpoint("crm", "crm.t", r#"Key "col""#);
        assert_eq!(key_text(&e, "t"), r#"format('%s', t."Key ""col""")"#);
        assert_eq!(
            col_list(&["a".into(), "B c".into(), r#"d"e"#.into()], "r."),
            r#"r."a", r."B c", r."d""e""#
        );
        assert_eq!(
            base_checksum_sql("x.b"),
            "encode(sha256(convert_to((x.b)::text, 'UTF8')), 'hex')"
        );
        assert!(pending_sql("\"s\"").contains("ARRAY['*']"));
    }

    #[test]
    fn work_lists_quote_names_and_carry_change_records_only_for_latest_wins() {
        let w = Window::new(
            None,
            crate::core::cursor::Snapshot::parse("10:12:").unwrap(),
        )
        .unwrap();
        let lw = work_sql(&config(Strategy::LatestWins), "\"sync\"", &w);
        // a system name is a literal, a table name and key column stay quoted identifiers
        assert!(lw.contains("c.system = 'it''s crm'"), "{lw}");
        assert!(
            lw.contains(&format!("(array_agg(c.ctid::text))[1:{CHANGE_TIDS}]")),
            "{lw}"
        );
        assert!(lw.contains("FROM \"sync\".change_log c"), "{lw}");
        let sw = work_sql(&config(Strategy::SourceWins), "\"sync\"", &w);
        assert!(sw.contains("NULL::text[] AS tids"), "{sw}");
        let init = initial_work_sql(&config(Strategy::Manual), "\"sync\"");
        assert!(init.contains(r#"FROM "Sales"."Crm; x" s"#), "{init}");
        assert!(init.contains(r#"format('%s', s."Key ""col""")"#), "{init}");
        assert!(
            init.contains("ORDER BY w.s_id NULLS LAST, w.t_id"),
            "{init}"
        );
    }
}
