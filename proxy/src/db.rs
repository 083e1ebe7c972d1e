//! Redis databases (`SELECT 0..15`) in the proxy. A connection works in one database (its
//! session's); the commands build their operations as if for database 0 (routes are the
//! keys' metadata entries, `cmd::keyed`), and this module moves them to the connection's
//! database: each route to the same entry in that database (`net::keyspace::meta_in_db`),
//! each operation wrapped in `KvOp::InDb` (database 0 stays unwrapped, byte-identical to
//! the previous release's requests).
//!
//! [`DbRouter`] is the router as a multi-round command of a connection sees it: the same
//! `exec` and `range_of`, in its database.

use bytes::Bytes;
use net::message::RangeDescriptor;
use net::message::kv::{KvOp, OpResult};

use crate::keyspace::{Db, meta_in_db};
use crate::route::{ExecError, Router};

/// `ops` (routed by database-0 metadata entries) moved to database `db`.
pub fn scope(ops: Vec<(Bytes, KvOp)>, db: Db) -> Vec<(Bytes, KvOp)> {
    if db == Db::ZERO {
        return ops;
    }
    ops.into_iter()
        .map(|(route, op)| match op {
            // Already moved to its database (route included).
            KvOp::InDb { .. } => (route, op),
            op => (meta_in_db(&route, db), op.into_db(db)),
        })
        .collect()
}

/// The router of one database.
#[derive(Debug, Clone, Copy)]
pub struct DbRouter<'a> {
    router: &'a Router,
    db: Db,
}

impl<'a> DbRouter<'a> {
    /// `router` in database `db`.
    pub fn new(router: &'a Router, db: Db) -> Self {
        Self { router, db }
    }

    /// The database.
    pub fn db(&self) -> Db {
        self.db
    }

    /// The router itself (routes and operations taken as they are).
    pub fn raw(&self) -> &'a Router {
        self.router
    }

    /// [`Router::exec`] of operations built for database 0, in this database.
    pub async fn exec(&self, ops: Vec<(Bytes, KvOp)>) -> Vec<Result<OpResult, ExecError>> {
        self.router.exec(scope(ops, self.db)).await
    }

    /// [`Router::range_of`] a route built for database 0, in this database.
    pub async fn range_of(&self, route: &[u8]) -> Result<RangeDescriptor, ExecError> {
        let route = meta_in_db(&Bytes::copy_from_slice(route), self.db);
        self.router.range_of(&route).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::meta_key;

    #[test]
    fn operations_move_to_the_database_and_database_0_is_untouched() {
        let key = Bytes::from_static(b"k");
        let ops = vec![(meta_key(Db::ZERO, &key), KvOp::StrGet { key: key.clone() })];
        assert_eq!(scope(ops.clone(), Db::ZERO), ops);
        let db = Db::new(5).expect("a database");
        let moved = scope(ops, db);
        assert_eq!(moved[0].0, meta_key(db, &key));
        assert_eq!(
            moved[0].1,
            KvOp::InDb {
                db,
                op: Box::new(KvOp::StrGet { key })
            }
        );
        // Already in a database: left there, route included.
        assert_eq!(scope(moved.clone(), Db::new(2).expect("a database")), moved);
    }
}
