//! Every public function with each argument NULL, and with bad names (issue 11, defect 3).
#[pgrx::pg_schema]
mod tests {
    use crate::core::args::NAME_MAX_BYTES;
    use crate::pgtests::util::*;
    use pgrx::prelude::*;

    /// How a function treats one of its arguments.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Kind {
        /// NULL refused with 22004
        Required,
        /// NULL refused with 22004; a name (empty 22023, over 63 bytes 22001)
        RequiredName,
        /// NULL allowed (documented meaning)
        Nullable,
        /// NULL allowed; a value is a name
        NullableName,
    }

    /// One call of a public function, each argument given by name with a valid value.
    struct Call {
        func: &'static str,
        args: Vec<(&'static str, &'static str, Kind)>,
    }

    impl Call {
        /// The call with argument `arg` replaced by the SQL text `value`.
        fn with(&self, arg: &str, value: &str) -> String {
            let a: Vec<String> = self
                .args
                .iter()
                .map(|(n, v, _)| format!("{n} => {}", if *n == arg { value } else { v }))
                .collect();
            format!("SELECT {}({})", self.func, a.join(", "))
        }
        fn base(&self) -> String {
            self.with("", "")
        }
        fn of(&self, kinds: &[Kind]) -> Vec<&'static str> {
            self.args
                .iter()
                .filter(|(_, _, k)| kinds.contains(k))
                .map(|(n, _, _)| *n)
                .collect()
        }
    }

    fn setup() {
        Spi::run(
            "CREATE TABLE args_a (id int PRIMARY KEY, v text);
             CREATE TABLE args_b (id int PRIMARY KEY, v text);
             CREATE TABLE args_c (id int PRIMARY KEY, v text);
             SELECT sync_register_table('args_a', 'things', 'args_a');
             SELECT sync_register_table('args_b', 'things', 'args_b');",
        )
        .unwrap();
    }

    fn calls() -> Vec<Call> {
        use Kind::*;
        vec![
            Call {
                func: "sync_register_table",
                args: vec![
                    ("system", "'args_c'", RequiredName),
                    ("entity_type", "'things'", RequiredName),
                    ("relation", "'args_c'", Required),
                    ("key_column", "'id'", Nullable),
                ],
            },
            Call {
                func: "sync_unregister_table",
                args: vec![
                    ("system", "'args_a'", RequiredName),
                    ("entity_type", "'things'", RequiredName),
                ],
            },
            Call {
                func: "sync_create_config",
                args: vec![
                    ("name", "'args_cfg'", RequiredName),
                    ("source_system", "'args_a'", RequiredName),
                    ("target_system", "'args_b'", RequiredName),
                    ("entity_type", "'things'", RequiredName),
                    (
                        "field_mapping",
                        "'[{\"source\": \"v\", \"target\": \"v\"}]'",
                        Nullable,
                    ),
                    ("conflict_strategy", "'latest_wins'", Required),
                    ("sync_direction", "'bidirectional'", Required),
                    ("sync_interval", "'1 minute'", Required),
                    ("match_on", "ARRAY['v']", Nullable),
                    ("target_entity_type", "'things'", NullableName),
                ],
            },
            Call {
                func: "sync_execute",
                args: vec![("config_id", "987654", Required)],
            },
            Call {
                func: "sync_resolve_conflict",
                args: vec![
                    ("conflict_id", "987654", Required),
                    ("choice", "'source'", Required),
                    ("merged", "'{}'", Nullable),
                ],
            },
            Call {
                func: "sync_changes",
                args: vec![
                    ("since", "sync_position()", Nullable),
                    ("until", "sync_position()", Required),
                    ("system", "'args_a'", NullableName),
                    ("entity_type", "'things'", NullableName),
                ],
            },
            Call {
                func: "sync_prune",
                args: vec![("keep", "'1 hour'", Nullable)],
            },
        ]
    }

    /// Run `sql` in a subtransaction that is always rolled back; "SQLSTATE: message" of
    /// its error, or None when it succeeded.
    fn try_rolled_back(sql: &str) -> Option<String> {
        Spi::run(
            "CREATE OR REPLACE FUNCTION pg_temp.args_try(q text) RETURNS text LANGUAGE plpgsql AS $f$
             BEGIN
                 EXECUTE q;
                 RAISE SQLSTATE 'ZZ001';
             EXCEPTION
                 WHEN SQLSTATE 'ZZ001' THEN RETURN NULL;
                 WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM;
             END $f$",
        )
        .unwrap();
        Spi::get_one_with_args::<String>("SELECT pg_temp.args_try($1)", &[sql.into()]).unwrap()
    }

    /// The base call does not fail on its arguments: the error (if any) is the one given.
    fn base_is_valid(c: &Call) {
        let e = try_rolled_back(&c.base());
        let expected = match c.func {
            // no such config / conflict: the arguments themselves are fine
            "sync_execute" | "sync_resolve_conflict" => Some("42704"),
            // the endpoint is used by no config here
            _ => None,
        };
        match (expected, &e) {
            (None, None) => {}
            (Some(code), Some(e)) if e.starts_with(code) => {}
            _ => panic!("{}: base call gave {e:?}, expected {expected:?}", c.base()),
        }
    }

    #[pg_test]
    fn null_in_a_required_argument_is_refused_naming_it() {
        setup();
        let mut checked = 0;
        for c in calls() {
            base_is_valid(&c);
            for arg in c.of(&[Kind::Required, Kind::RequiredName]) {
                let sql = c.with(arg, "NULL");
                expect_error(
                    &sql,
                    "22004",
                    &[&format!("{}: {arg} must not be NULL", c.func)],
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 16);
        // the scheduler script: a lookup that found nothing is an error, not NULL
        expect_error(
            "SELECT sync_execute((SELECT id FROM sync_configs WHERE name = 'typo'))",
            "22004",
            &["sync_execute: config_id must not be NULL"],
        );
        assert_eq!(count("SELECT count(*) FROM sync_configs"), 0);
        assert_eq!(
            count("SELECT count(*) FROM sync_endpoints"),
            2,
            "nothing registered or unregistered by a refused call"
        );
    }

    #[pg_test]
    fn null_in_a_nullable_argument_is_accepted() {
        setup();
        let mut checked = 0;
        for c in calls() {
            for arg in c.of(&[Kind::Nullable, Kind::NullableName]) {
                let sql = c.with(arg, "NULL");
                let e = try_rolled_back(&sql);
                let ok = match c.func {
                    "sync_resolve_conflict" => e.as_deref().is_some_and(|e| e.starts_with("42704")),
                    _ => e.is_none(),
                };
                assert!(ok, "{sql}: {e:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 9);
        // explicit NULLs mean what DESIGN.md says: same-named columns, no match_on, the
        // source's entity type, the primary key; sync_prune(NULL) keeps the retention
        Spi::run(
            "SELECT sync_create_config('args_cfg', 'args_a', 'args_b', 'things', field_mapping => NULL,
                 match_on => NULL, target_entity_type => NULL)",
        )
        .unwrap();
        assert_eq!(
            count(
                "SELECT count(*) FROM sync_configs WHERE name = 'args_cfg' AND match_on IS NULL
                    AND field_mapping IS NULL AND target_entity_type = 'things'"
            ),
            1
        );
        assert!(
            text("SELECT sync_register_table('args_c', 'things', 'args_c', NULL)::text").is_some()
        );
        assert_eq!(count("SELECT sync_prune(NULL)"), 0);
    }

    #[pg_test]
    fn null_element_of_match_on_is_refused_naming_it() {
        setup();
        expect_error(
            "SELECT sync_create_config('args_cfg', 'args_a', 'args_b', 'things', match_on => ARRAY['v', NULL])",
            "22004",
            &["sync_create_config: match_on must not contain NULL", "element 2"],
        );
        assert_eq!(count("SELECT count(*) FROM sync_configs"), 0);
    }

    #[pg_test]
    fn bad_names_are_refused_naming_the_argument() {
        setup();
        let long = format!("'{}'", "x".repeat(NAME_MAX_BYTES + 1));
        let mut checked = 0;
        for c in calls() {
            for arg in c.of(&[Kind::RequiredName, Kind::NullableName]) {
                expect_error(
                    &c.with(arg, &long),
                    "22001",
                    &[
                        c.func,
                        &format!("{arg} is 64 bytes long"),
                        "at most 63 bytes",
                    ],
                );
                expect_error(
                    &c.with(arg, "'  '"),
                    "22023",
                    &[&format!("{}: {arg} must be a non-empty name", c.func)],
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 11);
        // the 100,000-character system name
        expect_error(
            "SELECT sync_register_table(repeat('x', 100000), 'things', 'args_c')",
            "22001",
            &["system is 100000 bytes long"],
        );
        assert_eq!(count("SELECT count(*) FROM sync_endpoints"), 2);
        assert_eq!(count("SELECT count(*) FROM sync_configs"), 0);
        // the limit itself is a valid name, counted in bytes
        let max = "x".repeat(NAME_MAX_BYTES);
        Spi::run(&format!(
            "SELECT sync_register_table('{max}', 'things', 'args_c')"
        ))
        .unwrap();
        expect_error(
            &format!(
                "SELECT sync_register_table('{}', 'things', 'args_c')",
                "ä".repeat(32)
            ),
            "22001",
            &["system is 64 bytes long"],
        );
    }

    #[pg_test]
    fn build_info_tells_the_profile() {
        let j = json("SELECT sync_engine_build_info()");
        let expected = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        assert_eq!(j["profile"], expected, "{j}");
        assert_eq!(j["version"], env!("CARGO_PKG_VERSION"), "{j}");
        let ext = text("SELECT extversion FROM pg_extension WHERE extname = 'sync_engine'");
        assert_eq!(
            j["version"].as_str(),
            ext.as_deref(),
            "library and extension versions agree"
        );
    }
}
