//! Endpoints: (system, entity_type) bound to a table and its key column.

use crate::capture::TRIGGER_NAME;
use crate::pg::db::{self, spi_fail};
use crate::pg::fail;
use crate::pg::quote::ext_schema;
use crate::pg::quote::ext_schema_raw;
use crate::pg::quote::quote_ident;
use crate::pg::quote::quote_literal;
use crate::pg::security;
use pgrx::prelude::*;
use pgrx::PgRelation;

pub const TRUNCATE_TRIGGER_NAME: &str = "sync_engine_no_truncate";

/// A registered endpoint as the engine needs it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: i64,
    pub system: String,
    pub entity_type: String,
    /// schema-qualified, quoted relation name
    pub table: String,
    pub key_column: String,
    /// SQL type of the key column, e.g. "integer"
    pub key_type: String,
    /// user columns (not dropped, not system), in attribute order
    pub columns: Vec<String>,
    /// `format_type` of each column, same order
    pub column_types: Vec<String>,
    /// the type under any domains, without modifiers (`character varying` for
    /// `character varying(20)`, `bpchar` for `character(3)`): a value cast to it
    /// meets the column's modifier and domain checks as an assignment, which errors
    /// where an explicit cast to the full type would silently truncate
    pub column_base_types: Vec<String>,
    /// how values are written to each column
    pub column_inputs: Vec<crate::core::mapping::ColumnInput>,
    /// the key column's default expression, if any (used to make keys for new rows)
    pub key_default: Option<String>,
    /// the key is an identity column (inserts need OVERRIDING SYSTEM VALUE)
    pub key_identity: bool,
    /// the table's owner: every write into the table runs as this role
    /// (`security::as_table_owner`)
    pub owner: pg_sys::Oid,
    /// the table's OID
    pub relid: pg_sys::Oid,
}

impl Endpoint {
    pub fn column_type(&self, col: &str) -> Option<&str> {
        self.column_index(col)
            .map(|i| self.column_types[i].as_str())
    }

    pub fn column_index(&self, col: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == col)
    }
}

/// Load an endpoint by (system, entity_type); ERROR naming it when unknown.
pub fn load(system: &str, entity_type: &str) -> Endpoint {
    let schema = ext_schema();
    let row = db::one::<i64>(
        &format!("SELECT id FROM {schema}.sync_endpoints WHERE system = $1 AND entity_type = $2"),
        &[system.into(), entity_type.into()],
    );
    match row {
        Some(id) => load_by_id(id),
        None => fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            &format!(
                "no table is registered as system \"{system}\", entity type \"{entity_type}\"; register one with sync_register_table('{system}', '{entity_type}', 'schema.table')"
            ),
        ),
    }
}

pub fn load_by_id(id: i64) -> Endpoint {
    let schema = ext_schema();
    Spi::connect(|client| {
        let q = format!(
            "SELECT e.system, e.entity_type, e.key_column, c.oid IS NOT NULL, \
                    CASE WHEN c.oid IS NOT NULL THEN e.relation::oid::regclass::text END, c.relowner, c.oid \
               FROM {schema}.sync_endpoints e LEFT JOIN pg_class c ON c.oid = e.relation::oid \
              WHERE e.id = $1"
        );
        let t = client
            .select(&q, Some(1), &[id.into()])
            .unwrap_or_else(|e| spi_fail(e));
        if t.is_empty() {
            fail(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                &format!("sync endpoint {id} does not exist"),
            );
        }
        let r = t.first();
        let system: String = db::col(&r, 1).unwrap_or_default();
        let entity_type: String = db::col(&r, 2).unwrap_or_default();
        let key_column: String = db::col(&r, 3).unwrap_or_default();
        let exists: bool = db::col(&r, 4).unwrap_or(false);
        if !exists {
            fail(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                &format!(
                    "the table registered as \"{system}\".\"{entity_type}\" no longer exists; unregister it with sync_unregister_table('{system}', '{entity_type}')"
                ),
            );
        }
        let table: String = db::col(&r, 5).unwrap_or_default();
        let owner: pg_sys::Oid = db::col(&r, 6).unwrap_or(pg_sys::Oid::INVALID);
        let relid: pg_sys::Oid = db::col(&r, 7).unwrap_or(pg_sys::Oid::INVALID);
        let cols = client
            .select(
                // per column: its type, the bottom type under any domains without a
                // modifier (format_type(.., -1): "bpchar", not "character", which
                // means character(1)), and how values reach it: 's' (arrays,
                // composites, and types with a cast function from text, which may
                // read text differently from their input function) go through
                // json_to_recordset; 'j' json/jsonb; 't' text through the input
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), format_type(b.oid, -1), \
                        CASE WHEN b.typtype = 'c' OR b.typcategory = 'A' \
                                  OR EXISTS (SELECT 1 FROM pg_cast c WHERE c.castsource = 'text'::regtype \
                                                AND c.casttarget = b.oid AND c.castmethod = 'f') THEN 's' \
                             WHEN b.oid IN ('json'::regtype, 'jsonb'::regtype) THEN 'j' \
                             ELSE 't' END \
                   FROM pg_attribute a, \
                        LATERAL (WITH RECURSIVE d(oid, depth) AS ( \
                                     SELECT a.atttypid, 0 \
                                     UNION ALL SELECT t.typbasetype, d.depth + 1 FROM pg_type t JOIN d ON t.oid = d.oid \
                                      WHERE t.typtype = 'd' AND d.depth < 64) \
                                 SELECT t.oid, t.typtype, t.typcategory FROM d JOIN pg_type t ON t.oid = d.oid \
                                  ORDER BY d.depth DESC LIMIT 1) b \
                  WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                None,
                &[table.as_str().into()],
            )
            .unwrap_or_else(|e| spi_fail(e));
        let mut columns = Vec::new();
        let mut column_types = Vec::new();
        let mut column_base_types = Vec::new();
        let mut column_inputs = Vec::new();
        let mut key_type = None;
        for row in cols {
            let name: String = db::col(&row, 1).unwrap_or_default();
            let ty: String = db::col(&row, 2).unwrap_or_default();
            column_base_types.push(db::col::<String>(&row, 3).unwrap_or_else(|| ty.clone()));
            column_inputs.push(match db::col::<String>(&row, 4).as_deref() {
                Some("t") => crate::core::mapping::ColumnInput::Text,
                Some("j") => crate::core::mapping::ColumnInput::Json,
                _ => crate::core::mapping::ColumnInput::Structured,
            });
            if name == key_column {
                key_type = Some(ty.clone());
            }
            columns.push(name);
            column_types.push(ty);
        }
        let key_info = client
            .select(
                "SELECT pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '', \
                        pg_get_serial_sequence($1, a.attname) \
                   FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                  WHERE a.attrelid = $1::regclass AND a.attname = $2",
                Some(1),
                &[table.as_str().into(), key_column.as_str().into()],
            )
            .unwrap_or_else(|e| spi_fail(e));
        let (mut key_default, mut key_identity) = (None, false);
        if let Some(r) = key_info.into_iter().next() {
            key_identity = db::col::<bool>(&r, 2).unwrap_or(false);
            key_default = db::col::<String>(&r, 1);
            if key_identity {
                let seq: Option<String> = db::col(&r, 3);
                key_default =
                    seq.map(|s| format!("nextval({})", crate::pg::quote::quote_literal(&s)));
            }
        }
        let key_type = key_type.unwrap_or_else(|| {
            fail(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                &format!("key column \"{key_column}\" of {table} no longer exists; register the table again"),
            )
        });
        Endpoint {
            id,
            system,
            entity_type,
            table,
            key_column,
            key_type,
            columns,
            column_types,
            column_base_types,
            column_inputs,
            key_default,
            key_identity,
            owner,
            relid,
        }
    })
}

/// Register a table as the endpoint (system, entity_type) and install the capture
/// trigger. Returns the endpoint id.
pub fn register_table(
    system: &str,
    entity_type: &str,
    relation: PgRelation,
    key_column: Option<&str>,
) -> i64 {
    let relname = relation_name(relation.oid());
    let relkind = unsafe { (*relation.rd_rel).relkind } as u8;
    match relkind {
        b'r' | b'p' => {}
        b'v' | b'm' => fail(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            &format!("{relname} is a view; sync_register_table needs a table (register the table the view reads from)"),
        ),
        _ => fail(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            &format!("{relname} is not a table; sync_register_table needs an ordinary or partitioned table"),
        ),
    }
    let relid = relation.oid();
    drop(relation);
    security::require_table_owner(
        security::current_user(),
        relid,
        &relname,
        "register it with sync_engine",
    );
    // the endpoint and its triggers are the extension's, whoever registers
    security::as_extension_owner(|| {
        let schema = ext_schema();

        // already registered?
        let existing = db::two::<String, String>(
            &format!(
                "SELECT system, entity_type FROM {schema}.sync_endpoints \
                  WHERE relation = $1::oid::regclass OR (system = $2 AND entity_type = $3) LIMIT 1"
            ),
            &[relid.into(), system.into(), entity_type.into()],
        );
        if let Some((Some(s), Some(e))) = existing {
            fail(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                &format!(
                    "{relname} or the name (\"{system}\", \"{entity_type}\") is already registered as system \"{s}\", entity type \"{e}\"; call sync_unregister_table('{s}', '{e}') first"
                ),
            );
        }

        let key = match key_column {
            Some(k) => check_key_column(relid, &relname, k),
            None => primary_key_column(relid, &relname),
        };

        let id = db::one::<i64>(
            &format!(
                "INSERT INTO {schema}.sync_endpoints (system, entity_type, relation, key_column) \
                 VALUES ($1, $2, $3::oid::regclass, $4) RETURNING id"
            ),
            &[
                system.into(),
                entity_type.into(),
                relid.into(),
                key.as_str().into(),
            ],
        )
        .expect("INSERT RETURNING gives a row");

        let args = [
            ext_schema_raw(),
            system.to_string(),
            entity_type.to_string(),
            key,
        ]
        .iter()
        .map(|a| quote_literal(a))
        .collect::<Vec<_>>()
        .join(", ");
        // schema-qualified: the statement runs with the extension owner's search_path
        let table = qualified_name(relid);
        db::run(
            &format!(
                "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {table} \
             FOR EACH ROW EXECUTE FUNCTION {schema}.sync_capture({args})",
                quote_ident(TRIGGER_NAME)
            ),
            &[],
        );
        db::run(
            &format!(
                "CREATE TRIGGER {} BEFORE TRUNCATE ON {table} \
             FOR EACH STATEMENT EXECUTE FUNCTION {schema}.sync_refuse_truncate()",
                quote_ident(TRUNCATE_TRIGGER_NAME)
            ),
            &[],
        );
        id
    })
}

/// `schema.table` of relation `relid`, each part quoted where needed, whatever the
/// search_path.
fn qualified_name(relid: pg_sys::Oid) -> String {
    db::one::<String>(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
        &[relid.into()],
    )
    .unwrap_or_default()
}

fn relation_name(relid: pg_sys::Oid) -> String {
    db::one::<String>("SELECT $1::oid::regclass::text", &[relid.into()]).unwrap_or_default()
}

fn primary_key_column(relid: pg_sys::Oid, relname: &str) -> String {
    let cols = Spi::connect(|client| {
        let t = client
            .select(
                "SELECT a.attname::text FROM pg_index i \
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                  WHERE i.indrelid = $1 AND i.indisprimary",
                None,
                &[relid.into()],
            )
            .unwrap_or_else(|e| spi_fail(e));
        t.map(|r| db::col::<String>(&r, 1).unwrap_or_default())
            .collect::<Vec<_>>()
    });
    match cols.len() {
        1 => cols.into_iter().next().unwrap(),
        0 => fail(
            PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
            &format!(
                "{relname} has no primary key; add one or pass key_column naming a NOT NULL column with a unique index"
            ),
        ),
        _ => fail(
            PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
            &format!(
                "{relname} has a primary key of {} columns ({}); sync_engine needs a single-column key: pass key_column naming a NOT NULL column with a unique index",
                cols.len(),
                cols.join(", ")
            ),
        ),
    }
}

fn check_key_column(relid: pg_sys::Oid, relname: &str, key: &str) -> String {
    let found = db::two::<bool, bool>(
        "SELECT a.attnotnull, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid \
                 AND i.indisunique AND i.indnatts = 1 AND i.indkey[0] = a.attnum AND i.indpred IS NULL \
                 AND i.indexprs IS NULL) \
           FROM pg_attribute a WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
        &[relid.into(), key.into()],
    );
    match found {
        Some((Some(notnull), Some(unique))) => {
            if !notnull || !unique {
                fail(
                    PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
                    &format!(
                        "column \"{key}\" of {relname} cannot be the sync key: it must be NOT NULL and have a unique index of its own{}{}",
                        if notnull { "" } else { " (it is nullable)" },
                        if unique { "" } else { " (no single-column unique index)" }
                    ),
                );
            }
            key.to_string()
        }
        _ => fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            &format!("column \"{key}\" does not exist in {relname}"),
        ),
    }
}

/// Remove an endpoint and its triggers. Refused while a config still uses it.
pub fn unregister(system: &str, entity_type: &str) {
    let caller = security::current_user();
    security::as_extension_owner(|| unregister_table(caller, system, entity_type))
}

/// `sync_unregister_table` once running as the extension's owner; `caller` is who called.
fn unregister_table(caller: pg_sys::Oid, system: &str, entity_type: &str) {
    let schema = ext_schema();
    let row = db::two::<i64, String>(
        &format!(
            "SELECT e.id, (SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = e.relation::oid) \
               FROM {schema}.sync_endpoints e WHERE system = $1 AND entity_type = $2"
        ),
        &[system.into(), entity_type.into()],
    );
    let (id, relname) = match row {
        Some((Some(id), rel)) => (id, rel),
        _ => fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            &format!(
                "no table is registered as system \"{system}\", entity type \"{entity_type}\""
            ),
        ),
    };
    let users = db::one::<String>(
        &format!(
            "SELECT string_agg(name, ', ' ORDER BY name) FROM {schema}.sync_configs \
              WHERE source_endpoint_id = $1 OR target_endpoint_id = $1"
        ),
        &[id.into()],
    );
    if let Some(users) = users {
        fail(
            PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            &format!(
                "\"{system}\".\"{entity_type}\" is used by sync config(s) {users}; delete those configs first"
            ),
        );
    }
    if let Some(relname) = relname {
        let relid = db::one::<pg_sys::Oid>("SELECT $1::regclass::oid", &[relname.as_str().into()])
            .unwrap_or(pg_sys::Oid::INVALID);
        security::require_table_owner(caller, relid, &relname, "unregister it");
        for t in [TRIGGER_NAME, TRUNCATE_TRIGGER_NAME] {
            db::run(
                &format!("DROP TRIGGER IF EXISTS {} ON {relname}", quote_ident(t)),
                &[],
            );
        }
    }
    db::run(
        &format!("DELETE FROM {schema}.sync_endpoints WHERE id = $1"),
        &[id.into()],
    );
}
