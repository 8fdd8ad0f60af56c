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
//! exclusive, in [`Table::ALL`] order. A group of write jobs (see
//! `writer`) takes the keys of all its jobs at once: its tables' keys
//! shared in [`Table::ALL`] order (by id), then its entities' keys exclusive in
//! ascending order.
//!
//! No two transactions can wait on each other in a cycle, because every
//! one takes its keys in one global order — table keys in [`Table::ALL`]
//! order before entity keys in ascending order: a transaction waits only
//! for a key above every key it holds, so along a chain of waits the key
//! waited for never decreases, and it stays equal only between waiters
//! queued for the same key (one queue, no cycle). A single entity scope
//! takes its two keys with one `SELECT` whose calls PostgreSQL evaluates
//! left to right (table first). A hash collision only serializes more
//! than needed.

use std::fmt::Write as _;

use stowage_core::engine::{Scope, Table};

use super::schema;

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

/// How every write transaction begins: `READ COMMITTED` named, not left
/// to the server's default. A job reads after its locks are granted and
/// must see what the transactions it waited for committed; under a
/// `default_transaction_isolation` of `repeatable read` its snapshot
/// would predate the lock, and writes to one entity would fail with
/// serialization errors.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// The statements that open a write transaction for `scope`, take its
/// locks and then check the schema version (see
/// [`schema::check_sql`]): one simple-query round trip. Keys are
/// integers, safe to splice.
pub(super) fn begin_sql(schema: &str, scope: &Scope) -> String {
    let table = |t: Table| table_key(schema, t);
    let check = schema::check_sql();
    match scope {
        Scope::Entity { table: t, key } => {
            let entity = entity_key(schema, *t, key);
            // One statement for both locks, table first (the global
            // order; PostgreSQL evaluates the calls left to right).
            // Prepared (see `PREPARE_LOCKS`): the server does not parse
            // and plan it for every job.
            format!(
                "{BEGIN}; EXECUTE stowage_lock_entity({}, {entity}); {check}",
                table(*t)
            )
        }
        Scope::Table(t) => format!(
            "{BEGIN}; EXECUTE stowage_lock_table({}); {check}",
            table(*t)
        ),
        Scope::Unshared => format!("{BEGIN}; {check}"),
        _ => format!("{}; {check}", lock_all_sql(schema)),
    }
}

/// `BEGIN`, then every table's key exclusive in [`Table::ALL`] order: what
/// a scope this code does not know takes, and a migration, so that it
/// waits for every write transaction in flight and every later one sees
/// its schema version.
pub(super) fn lock_all_sql(schema: &str) -> String {
    let mut sql = BEGIN.to_owned();
    for t in Table::ALL {
        let _ = write!(
            sql,
            "; SELECT pg_advisory_xact_lock({})",
            table_key(schema, t)
        );
    }
    sql
}

/// The opening statements of a group of jobs with these `scopes`
/// (entity and unshared scopes only; see `writer`): `BEGIN`, then every
/// table key shared and every entity key exclusive, in the global order
/// (see the module docs), one statement each so they are taken in that
/// order, then the schema version check.
pub(super) fn begin_group_sql<'a>(schema: &str, scopes: impl Iterator<Item = &'a Scope>) -> String {
    let mut tables = Vec::new();
    let mut entities = Vec::new();
    for scope in scopes {
        if let Scope::Entity { table, key } = scope {
            tables.push(*table);
            entities.push(entity_key(schema, *table, key));
        }
    }
    tables.sort_by_key(|t| t.id());
    tables.dedup();
    entities.sort_unstable();
    entities.dedup();
    let mut sql = BEGIN.to_owned();
    for table in tables {
        let key = table_key(schema, table);
        let _ = write!(sql, "; SELECT pg_advisory_xact_lock_shared({key})");
    }
    for key in entities {
        let _ = write!(sql, "; SELECT pg_advisory_xact_lock({key})");
    }
    let _ = write!(sql, "; {}", schema::check_sql());
    sql
}

fn table_key(schema: &str, table: Table) -> i64 {
    hash(&[b"stowage:table", schema.as_bytes(), table.name().as_bytes()])
}

fn entity_key(schema: &str, table: Table, key: &[u8]) -> i64 {
    hash(&[
        b"stowage:entity",
        schema.as_bytes(),
        table.name().as_bytes(),
        key,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_take_table_keys_then_entity_keys_in_ascending_order() {
        let scopes = [
            Scope::entity(Table::RunEvents, b"x".to_vec()),
            Scope::Unshared,
            Scope::entity(Table::Runs, b"b".to_vec()),
            Scope::entity(Table::Runs, b"a".to_vec()),
        ];
        let sql = begin_group_sql("s", scopes.iter());
        let mut statements: Vec<&str> = sql.split("; ").collect();
        assert_eq!(statements[0], BEGIN);
        assert_eq!(statements.pop(), Some(schema::check_sql()));
        let key = |s: &str| -> i64 {
            let inner = s.rsplit_once('(').expect("call").1;
            inner.trim_end_matches(')').parse().expect("key")
        };
        // Two tables shared (Runs before RunEvents, by id), then three
        // entities exclusive, ascending.
        let (tables, entities) = statements[1..].split_at(2);
        assert!(tables
            .iter()
            .all(|s| s.starts_with("SELECT pg_advisory_xact_lock_shared(")));
        assert_eq!(key(tables[0]), table_key("s", Table::Runs));
        assert_eq!(key(tables[1]), table_key("s", Table::RunEvents));
        assert_eq!(entities.len(), 3);
        assert!(entities
            .iter()
            .all(|s| s.starts_with("SELECT pg_advisory_xact_lock(")));
        let keys: Vec<i64> = entities.iter().map(|s| key(s)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(
            begin_group_sql("s", [Scope::Unshared].iter()),
            format!("{BEGIN}; {}", schema::check_sql())
        );
    }

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
        assert_eq!(
            begin_sql("s1", &Scope::Unshared),
            format!("{BEGIN}; {}", schema::check_sql())
        );
        // Groups take table keys in `Table::ALL` order by sorting by id.
        assert!(Table::ALL.windows(2).all(|w| w[0].id() < w[1].id()));
        // FNV-1a of nothing is the offset basis: the hash is the same in
        // every build and process.
        assert_eq!(hash(&[]), 0xcbf2_9ce4_8422_2325_u64 as i64);
    }
}
