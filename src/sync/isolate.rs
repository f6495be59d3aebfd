//! Applying a batch's ops so that one failing pair never stops the others:
//! batch -> retry without the raced pairs -> one subtransaction per pair.

use super::run::Run;
use crate::core::plan::{self, Op};
use crate::pg::subxact;

impl Run<'_> {
    /// Apply `ops` in one subtransaction. When that fails because rows changed in
    /// another transaction after the run read them, those pairs are recorded as errors
    /// (retried next run) and the rest is applied together once more. Any other
    /// failure applies the ops one subtransaction each, recording the failing ones in
    /// sync_errors with their SQLSTATE. Counts what went through.
    pub(super) fn apply_isolated(&mut self, mut ops: Vec<Op>) {
        self.raced.borrow_mut().clear();
        let whole = subxact::run_for_rows(|| self.apply(&ops));
        if let Err(e) = &whole {
            let raced = std::mem::take(&mut *self.raced.borrow_mut());
            if !raced.is_empty() {
                let (hit, rest) = plan::split_raced(ops, &raced);
                for o in &hit {
                    self.record_error(&o.ids, &e.sqlstate, &e.message);
                }
                ops = rest;
                match subxact::run_for_rows(|| self.apply(&ops)) {
                    Ok(st) => return self.add(st),
                    Err(_) => self.raced.borrow_mut().clear(),
                }
            }
        }
        match whole {
            Ok(st) => self.add(st),
            Err(_) => {
                for op in &ops {
                    match subxact::run_for_rows(|| self.apply(std::slice::from_ref(op))) {
                        Ok(st) => self.add(st),
                        Err(e) => {
                            self.raced.borrow_mut().clear();
                            self.record_error(&op.ids, &e.sqlstate, &e.message)
                        }
                    }
                }
            }
        }
    }
}
