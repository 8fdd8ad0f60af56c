//! Advisory lock keys: how a [`Scope`] becomes the transaction-level
//! advisory locks a write job takes before it runs.
//!
//! Keys are a stable 64-bit FNV-1a hash of the store's schema and the
//! scope, so every process computes the same keys and stores in other
//! schemas of the same database never contend. An entity scope takes its
//! table's key shared and then the entity's key exclusive; a table scope
//! takes its table's key exclusive (so it conflicts with every entity
//! scope of that table, and entity scopes of one table only with the same
//! entity); a scope this code does not know takes every table's key
//! exclusive, in [`Table::ALL`] order. No two jobs can wait on each other
//! in a cycle: table and unknown scopes take table keys in one order, and
//! entity scopes hold at most one table key, shared (so only exclusive
//! holders block them, and those wait for nothing an entity scope holds
//! except that same key). A hash collision only serializes more than
//! needed.

use stowage_core::engine::{Scope, Table};

/// FNV-1a over length-prefixed parts.
fn hash(parts: &[&[u8]]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        let len = (part.len() as u64).to_le_bytes();
        for b in len.iter().chain(part.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h as i64
}

/// The key of the schema migration lock (a session lock, see `schema`).
pub(super) fn migration_key(schema: &str) -> i64 {
    hash(&[b"stowage:migrate", schema.as_bytes()])
}

/// The lock statements `begin_sql` executes, prepared once per connection
/// (with `sql::prepare_all`).
pub(super) const PREPARE_LOCKS: &str = "PREPARE stowage_lock_entity (bigint, bigint) AS \
     SELECT pg_advisory_xact_lock_shared($1), pg_advisory_xact_lock($2);\n\
     PREPARE stowage_lock_table (bigint) AS SELECT pg_advisory_xact_lock($1)";

/// The statements that open a write transaction for `scope` and take its
/// locks: one simple-query round trip. Keys are integers, safe to splice.
pub(super) fn begin_sql(schema: &str, scope: &Scope) -> String {
    let table = |t: Table| hash(&[b"stowage:table", schema.as_bytes(), t.name().as_bytes()]);
    match scope {
        Scope::Entity { table: t, key } => {
            let entity = hash(&[
                b"stowage:entity",
                schema.as_bytes(),
                t.name().as_bytes(),
                key,
            ]);
            // One statement for both locks. The order they are granted in
            // does not matter for deadlocks: entity scopes hold at most one
            // table lock, and only shared, so no cycle can form.
            // Prepared (see `PREPARE_LOCKS`): the server does not parse
            // and plan it for every job.
            format!(
                "BEGIN; EXECUTE stowage_lock_entity({}, {entity})",
                table(*t)
            )
        }
        Scope::Table(t) => format!("BEGIN; EXECUTE stowage_lock_table({})", table(*t)),
        Scope::Unshared => "BEGIN".to_owned(),
        _ => {
            let mut sql = "BEGIN".to_owned();
            for t in Table::ALL {
                sql.push_str(&format!("; SELECT pg_advisory_xact_lock({})", table(t)));
            }
            sql
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_scoped_by_schema() {
        let a = begin_sql("s1", &Scope::entity(Table::Runs, b"k".to_vec()));
        assert_eq!(
            a,
            begin_sql("s1", &Scope::entity(Table::Runs, b"k".to_vec()))
        );
        assert_ne!(
            a,
            begin_sql("s2", &Scope::entity(Table::Runs, b"k".to_vec()))
        );
        assert_ne!(
            a,
            begin_sql("s1", &Scope::entity(Table::Runs, b"j".to_vec()))
        );
        assert_eq!(begin_sql("s1", &Scope::Unshared), "BEGIN");
        // FNV-1a of nothing is the offset basis: the hash is the same in
        // every build and process.
        assert_eq!(hash(&[]), 0xcbf2_9ce4_8422_2325_u64 as i64);
    }
}
