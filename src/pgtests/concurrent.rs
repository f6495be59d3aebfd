//! Tests that need several real connections with autocommit (plain #[test]s that talk
//! to the pgrx test cluster through `pgrx_tests::client()`).

#[cfg(test)]
/// Start the pgrx test cluster (and create the extension) if it is not running yet.
pub fn cluster() {
    pgrx_tests::run_test("ready", None, crate::pg_test::postgresql_conf_options()).unwrap();
}

#[cfg(test)]
mod tests {
    use super::cluster;

    fn ids(c: &mut postgres::Client, since: Option<&str>, until: &str) -> Vec<String> {
        ids_of(c, "conc", since, until)
    }

    /// Entity ids of `system`'s changes in the window (since, until], in id order.
    fn ids_of(
        c: &mut postgres::Client,
        system: &str,
        since: Option<&str>,
        until: &str,
    ) -> Vec<String> {
        c.query(
            "SELECT entity_id FROM sync_changes($1, $2, $3) ORDER BY id",
            &[&since, &until, &system],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
    }

    fn position(c: &mut postgres::Client) -> String {
        c.query_one("SELECT sync_position()", &[]).unwrap().get(0)
    }

    #[test]
    fn transaction_that_began_first_and_committed_last_is_read_next_time_once() {
        cluster();
        let (mut long, _) = pgrx_tests::client().unwrap();
        let (mut short, _) = pgrx_tests::client().unwrap();
        let (mut reader, _) = pgrx_tests::client().unwrap();
        long.batch_execute(
            "CREATE TABLE conc_t (id int PRIMARY KEY, v text);
             SELECT sync_register_table('conc', 't', 'conc_t');",
        )
        .unwrap();
        let p0 = position(&mut reader);

        // the long transaction begins first and writes (so it has an xid)...
        long.batch_execute("BEGIN; INSERT INTO conc_t VALUES (1, 'long');")
            .unwrap();
        // ...a short one begins later and commits first
        short
            .batch_execute("INSERT INTO conc_t VALUES (2, 'short')")
            .unwrap();

        let p1 = position(&mut reader);
        assert_eq!(
            ids(&mut reader, Some(&p0), &p1),
            vec!["2"],
            "first read sees the committed change only"
        );

        long.batch_execute("COMMIT").unwrap();
        // a sequence/timestamp cursor would have moved past id/time of change 1 by now
        let p2 = position(&mut reader);
        assert_eq!(
            ids(&mut reader, Some(&p1), &p2),
            vec!["1"],
            "the late commit arrives on the next read"
        );

        short
            .batch_execute("UPDATE conc_t SET v = 'again' WHERE id = 2")
            .unwrap();
        let p3 = position(&mut reader);
        assert_eq!(
            ids(&mut reader, Some(&p2), &p3),
            vec!["2"],
            "and never twice"
        );
        let p4 = position(&mut reader);
        assert_eq!(ids(&mut reader, Some(&p3), &p4), Vec::<String>::new());
        // the windows together are exactly everything
        let mut all = ids(&mut reader, None, &p3);
        all.sort();
        assert_eq!(all, vec!["1", "2", "2"]);
    }

    /// A position taken inside a transaction that has written leaves that transaction's
    /// changes for the window after it commits, even when a later transaction has
    /// already committed (so the snapshot's xmax is past our own xid).
    #[test]
    fn a_position_taken_inside_a_writing_transaction_leaves_its_changes_for_later() {
        cluster();
        let (mut own, _) = pgrx_tests::client().unwrap();
        let (mut other, _) = pgrx_tests::client().unwrap();
        let (mut reader, _) = pgrx_tests::client().unwrap();
        own.batch_execute(
            "CREATE TABLE conc_own (id int PRIMARY KEY, v text);
             SELECT sync_register_table('conc_own', 't', 'conc_own');",
        )
        .unwrap();
        let ids = |c: &mut postgres::Client, since: Option<&str>, until: &str| {
            ids_of(c, "conc_own", since, until)
        };
        own.batch_execute("BEGIN; INSERT INTO conc_own VALUES (1, 'own');")
            .unwrap();
        other
            .batch_execute("INSERT INTO conc_own VALUES (2, 'later, committed')")
            .unwrap();
        let p1 = position(&mut own);
        assert_eq!(
            ids(&mut own, None, &p1),
            vec!["2"],
            "its own change is not in a window read inside it"
        );
        own.batch_execute("COMMIT").unwrap();
        let p2 = position(&mut reader);
        assert_eq!(
            ids(&mut reader, Some(&p1), &p2),
            vec!["1"],
            "but in the next one"
        );
    }
}
