//! The lifecycle's Lua scripts. Like every script of this backend, each
//! checks all its preconditions before its first write, so a refusal has
//! changed nothing. Counted scripts take the counters hash as an optional
//! last key (see `counting!` in `super::super::scripts`).

use super::super::conn::Lua;
use super::super::scripts::counting;

/// Deletes a run: record hash, events, idempotency keys and (when given)
/// its three index entries. KEYS: meta, events, idem, then on a single node
/// the counters hash, the all-runs, by-spec and by-agent indexes. ARGV:
/// run id (index member), `running` (`keep`: refuse a running run),
/// expected status (or "": any), keep-newest count (or ""; checked only
/// when the agent index is given). Returns `{'ok', events}`, `{'absent'}`,
/// `{'running'}`, `{'changed'}` (the status moved) or `{'kept'}`.
const DELETE_RUN: &str = concat!(
    counting!(),
    r#"
local m = redis.call('HMGET', KEYS[1], 'status', 'next', 'bytes')
if not m[1] then return {'absent'} end
if ARGV[3] ~= '' and m[1] ~= ARGV[3] then return {'changed'} end
if m[1] == 'Running' and ARGV[2] == 'keep' then return {'running'} end
if ARGV[4] ~= '' and KEYS[7] then
  local n = tonumber(ARGV[4])
  if redis.call('ZLEXCOUNT', KEYS[7], '(' .. ARGV[1], '+') < n then return {'kept'} end
end
local rec = redis.call('HSTRLEN', KEYS[1], 'rec')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if KEYS[5] then
  for i = 5, 7 do redis.call('ZREM', KEYS[i], ARGV[1]) end
end
local events = tonumber(m[2] or '0')
count(KEYS[4], 'run_events', -events)
count(KEYS[4], 'bytes', -(tonumber(m[3] or '0') + rec))
return done({'ok', events})
"#
);

/// Removes one member from every index in KEYS. ARGV: member.
const INDEX_REMOVE: &str = r#"
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return {'ok'}
"#;

/// A session as a sweep judges it, read atomically. KEYS: meta, log.
/// Returns `{'ok', rec, ver, next, head, last entry}` (false for missing
/// fields) or `{'absent'}`.
const PEEK_SESSION: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'rec', 'ver', 'next', 'head')
if not m[1] then return {'absent'} end
local last = redis.call('LINDEX', KEYS[2], -1)
return {'ok', m[1], m[2] or false, m[3] or '0', m[4] or '', last or false}
"#;

/// A session with its whole log, read atomically (a fork's source).
/// KEYS: meta, log. Returns `{'ok', rec, next, head, {entries}}` or
/// `{'absent'}`.
const SNAPSHOT_SESSION: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'rec', 'next', 'head')
if not m[1] then return {'absent'} end
return {'ok', m[1], m[2] or '0', m[3] or '', redis.call('LRANGE', KEYS[2], 0, -1)}
"#;

/// Moves a session to `Expired` if it is exactly as the sweep judged it
/// (version, log length and head). KEYS: meta, counters hash (absent on a
/// cluster). ARGV: expected version, expected next, expected head, new
/// version, new record.
const EXPIRE_SESSION: &str = concat!(
    counting!(),
    r#"
local m = redis.call('HMGET', KEYS[1], 'ver', 'next', 'head')
if not m[1] then return {'absent'} end
if m[1] ~= ARGV[1] or (m[2] or '0') ~= ARGV[2] or (m[3] or '') ~= ARGV[3] then
  return {'moved'}
end
local old = redis.call('HSTRLEN', KEYS[1], 'rec')
redis.call('HSET', KEYS[1], 'ver', ARGV[4], 'rec', ARGV[5], 'final', '1')
count(KEYS[2], 'bytes', #ARGV[5] - old)
return done({'ok'})
"#
);

/// Deletes a session with its log if it is exactly as the sweep judged it.
/// KEYS: meta, log, idem, counters hash (absent on a cluster). ARGV:
/// expected version, expected next, expected head. Returns `{'ok', entries}`.
const PRUNE_SESSION: &str = concat!(
    counting!(),
    r#"
local m = redis.call('HMGET', KEYS[1], 'ver', 'next', 'head', 'bytes')
if not m[1] then return {'absent'} end
if m[1] ~= ARGV[1] or (m[2] or '0') ~= ARGV[2] or (m[3] or '') ~= ARGV[3] then
  return {'moved'}
end
local rec = redis.call('HSTRLEN', KEYS[1], 'rec')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
local entries = tonumber(m[2] or '0')
count(KEYS[4], 'log_entries', -entries)
count(KEYS[4], 'bytes', -(tonumber(m[4] or '0') + rec))
return done({'ok', entries})
"#
);

/// Creates a session with a whole log unless it exists (a fork). KEYS:
/// meta, log, idem, counters hash (absent on a cluster). ARGV: record,
/// final flag, head, entry count n, n records, then pairs of idempotency
/// key and seq.
const FORK_SESSION: &str = concat!(
    counting!(),
    r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
redis.call('DEL', KEYS[2], KEYS[3])
local n = tonumber(ARGV[4])
local i = 5
while i < 5 + n do
  local stop = math.min(i + 999, 4 + n)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, stop))
  i = stop + 1
end
local bytes = 0
for k = 5, 4 + n do bytes = bytes + #ARGV[k] end
local j = 5 + n
while j < #ARGV do
  redis.call('HSET', KEYS[3], ARGV[j], ARGV[j + 1])
  j = j + 2
end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'ver', '1', 'head', ARGV[3],
  'next', tostring(n), 'final', ARGV[2], 'bytes', bytes)
count(KEYS[4], 'log_entries', n)
count(KEYS[4], 'bytes', bytes + #ARGV[1])
return done({'ok'})
"#
);

/// Writes a whole release history under a name that has none (a fork).
/// KEYS: history, counters hash (absent on a cluster). ARGV: records.
const FORK_RELEASE: &str = concat!(
    counting!(),
    r#"
if redis.call('LLEN', KEYS[1]) > 0 then return {'exists'} end
local i = 1
while i <= #ARGV do
  local stop = math.min(i + 999, #ARGV)
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, stop))
  i = stop + 1
end
local bytes = 0
for k = 1, #ARGV do bytes = bytes + #ARGV[k] end
count(KEYS[2], 'release_records', #ARGV)
count(KEYS[2], 'bytes', bytes)
return done({'ok'})
"#
);

/// Records a reference at the given time, overwriting any earlier entry
/// of the referrer (so garbage collection, which drops an entry only if its
/// time is unchanged, sees that it was recorded again). KEYS: refs,
/// counters hash (absent on a cluster). ARGV: referrer field, now (ms).
const REFERENCE: &str = concat!(
    counting!(),
    r#"
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  count(KEYS[2], 'blob_references', 1)
end
return done({'ok'})
"#
);

/// Removes a reference. KEYS: refs, counters hash (absent on a cluster).
/// ARGV: referrer field. `{'ok'}` if it was there, `{'none'}` otherwise.
const UNREFERENCE: &str = concat!(
    counting!(),
    r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {'none'} end
count(KEYS[2], 'blob_references', -1)
return done({'ok'})
"#
);

/// One step of collecting a blob. Drops the reference entries the client
/// found stale, each only if its recorded time is still the one it judged
/// (a reference recorded again since is kept); then, when `finish` is set,
/// deletes the blob if it exists, its last put is before the cutoff and no
/// reference entry is left. KEYS: data, at, refs, counters hash (absent on
/// a cluster). ARGV: cutoff (ms), finish (`1` or ""), then pairs of field
/// and recorded time. Returns `{'ok', freed}` (content bytes, or -1 when
/// the blob stays) or `{'kept'}` when nothing changed.
const COLLECT: &str = concat!(
    counting!(),
    r#"
local dropped = 0
for i = 3, #ARGV, 2 do
  if redis.call('HGET', KEYS[3], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[3], ARGV[i])
    dropped = dropped + 1
  end
end
count(KEYS[4], 'blob_references', -dropped)
local freed = -1
if ARGV[2] == '1' then
  local len = redis.call('STRLEN', KEYS[1])
  local at = tonumber(redis.call('GET', KEYS[2]) or '0')
  if len > 0 and at < tonumber(ARGV[1]) and redis.call('HLEN', KEYS[3]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
    count(KEYS[4], 'blob_bytes', -len)
    count(KEYS[4], 'bytes', -len)
    freed = len - 4
  end
end
if dropped == 0 and freed < 0 then return {'kept'} end
return done({'ok', freed})
"#
);

/// The counts kept as index sizes, read atomically. KEYS: runs, sessions,
/// release names and blobs indexes (one slot).
const INDEX_SIZES: &str = r#"
local out = {}
for i = 1, #KEYS do out[i] = redis.call('ZCARD', KEYS[i]) end
return out
"#;

/// The lifecycle's scripts, hashed once per open store.
pub(crate) struct LifeScripts {
    pub(crate) delete_run: Lua,
    pub(crate) index_remove: Lua,
    pub(crate) peek_session: Lua,
    pub(crate) snapshot_session: Lua,
    pub(crate) expire_session: Lua,
    pub(crate) prune_session: Lua,
    pub(crate) fork_session: Lua,
    pub(crate) fork_release: Lua,
    pub(crate) reference: Lua,
    pub(crate) unreference: Lua,
    pub(crate) collect: Lua,
    pub(crate) index_sizes: Lua,
}

impl LifeScripts {
    pub(crate) fn new() -> Self {
        LifeScripts {
            delete_run: Lua::new(DELETE_RUN),
            index_remove: Lua::new(INDEX_REMOVE),
            peek_session: Lua::new(PEEK_SESSION),
            snapshot_session: Lua::new(SNAPSHOT_SESSION),
            expire_session: Lua::new(EXPIRE_SESSION),
            prune_session: Lua::new(PRUNE_SESSION),
            fork_session: Lua::new(FORK_SESSION),
            fork_release: Lua::new(FORK_RELEASE),
            reference: Lua::new(REFERENCE),
            unreference: Lua::new(UNREFERENCE),
            collect: Lua::new(COLLECT),
            index_sizes: Lua::new(INDEX_SIZES),
        }
    }
}
