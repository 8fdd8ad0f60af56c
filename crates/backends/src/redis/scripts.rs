//! The Lua scripts. Each checks every precondition before its first write
//! (Redis does not roll back a half-run script), so a script that returns a
//! refusal has changed nothing.

use super::conn::Lua;

/// The counting helpers every counted script starts with (a literal, so
/// scripts can `concat!` it). `count(S, field, delta)` adds to the counters
/// hash `S` when the script was given it (a single node), or else collects
/// the delta; `done(reply)` appends the collected deltas as a last item
/// `{'#stats', field, delta, …}`, which `Conn::mutate` applies to the
/// counters hash in a second step (a cluster: the hash is in another slot).
macro_rules! counting {
    () => {
        r#"
local counted = {}
local function count(s, field, delta)
  if delta == 0 then return end
  if s then
    redis.call('HINCRBY', s, field, delta)
  else
    table.insert(counted, field)
    table.insert(counted, string.format('%d', delta))
  end
end
local function done(reply)
  if #counted > 0 then
    local t = {'#stats'}
    for _, v in ipairs(counted) do table.insert(t, v) end
    table.insert(reply, t)
  end
  return reply
end
"#
    };
}
pub(crate) use counting;

/// Appends one record to a hash-chained list (run events, session log).
/// KEYS: meta, list, idem. ARGV: mode (`run` checks the status, `session`
/// the `final` flag that core's `SessionState::is_final` set), expected
/// next seq, expected head hash (hex or ""), new head, record, idempotency
/// key (or ""), the next seq after this one. `next` and `head` live in the
/// meta hash, so the checks cost one `HMGET`. KEYS[4]: the counters hash
/// (absent on a cluster). Every chain append also adds the record's length
/// to the owner's `bytes` field, so a delete knows what it frees. The
/// append scripts are the hot path, so they count inline, without the
/// `counting!` helpers (the same reply shape).
const APPEND: &str = r#"
local gate = 'final'
if ARGV[1] == 'run' then gate = 'status' end
local m = redis.call('HMGET', KEYS[1], 'next', 'head', gate, 'bytes')
if not m[1] then return {'notfound'} end
if ARGV[6] ~= '' then
  local s = redis.call('HGET', KEYS[3], ARGV[6])
  if s then return {'dup', redis.call('LINDEX', KEYS[2], s)} end
end
if ARGV[1] == 'run' and m[3] ~= 'Running' then return {'status', m[3] or ''} end
if ARGV[1] ~= 'run' and m[3] == '1' then return {'status', 'final'} end
if m[1] ~= ARGV[2] or m[2] ~= ARGV[3] then return {'moved', m[1], m[2] or ''} end
local len = #ARGV[5]
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('HSET', KEYS[1], 'head', ARGV[4], 'next', ARGV[7], 'bytes', (tonumber(m[4]) or 0) + len)
if ARGV[6] ~= '' then redis.call('HSET', KEYS[3], ARGV[6], ARGV[2]) end
local field = 'log_entries'
if ARGV[1] == 'run' then field = 'run_events' end
if not KEYS[4] then return {'ok', {'#stats', field, '1', 'bytes', tostring(len)}} end
redis.call('HINCRBY', KEYS[4], field, 1)
redis.call('HINCRBY', KEYS[4], 'bytes', len)
return {'ok'}
"#;

/// [`APPEND`] for a run without an idempotency key: fewer arguments (Lua
/// argument passing is a large share of a small script's cost), the same
/// checks. KEYS: meta, list. ARGV: expected next seq, expected head hash
/// (hex or ""), new head, record, the next seq after this one. KEYS[3]:
/// the counters hash (absent on a cluster).
const APPEND_RUN: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'next', 'head', 'status', 'bytes')
if not m[1] then return {'notfound'} end
if m[3] ~= 'Running' then return {'status', m[3] or ''} end
if m[1] ~= ARGV[1] or m[2] ~= ARGV[2] then return {'moved', m[1], m[2] or ''} end
local len = #ARGV[4]
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[1], 'head', ARGV[3], 'next', ARGV[5], 'bytes', (tonumber(m[4]) or 0) + len)
if not KEYS[3] then return {'ok', {'#stats', 'run_events', '1', 'bytes', tostring(len)}} end
redis.call('HINCRBY', KEYS[3], 'run_events', 1)
redis.call('HINCRBY', KEYS[3], 'bytes', len)
return {'ok'}
"#;

/// [`APPEND_RUN`] for a session log (the `final` flag instead of a status).
const APPEND_SESSION: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'next', 'head', 'final', 'bytes')
if not m[1] then return {'notfound'} end
if m[3] == '1' then return {'status', 'final'} end
if m[1] ~= ARGV[1] or m[2] ~= ARGV[2] then return {'moved', m[1], m[2] or ''} end
local len = #ARGV[4]
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[1], 'head', ARGV[3], 'next', ARGV[5], 'bytes', (tonumber(m[4]) or 0) + len)
if not KEYS[3] then return {'ok', {'#stats', 'log_entries', '1', 'bytes', tostring(len)}} end
redis.call('HINCRBY', KEYS[3], 'log_entries', 1)
redis.call('HINCRBY', KEYS[3], 'bytes', len)
return {'ok'}
"#;

/// Reads a chain head and looks up an idempotency key in one step.
/// KEYS: meta, list, idem. ARGV: idempotency key (or "").
const HEAD: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local dup = false
if ARGV[1] ~= '' then
  local s = redis.call('HGET', KEYS[3], ARGV[1])
  if s then dup = redis.call('LINDEX', KEYS[2], s) end
end
local m = redis.call('HMGET', KEYS[1], 'next', 'head')
return {'ok', m[1] or '0', m[2] or '', dup}
"#;

/// A page of a list whose owner must exist. KEYS: meta, list. ARGV: start, stop.
const READ_LIST: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
return {'ok', redis.call('LRANGE', KEYS[2], ARGV[1], ARGV[2])}
"#;

/// Moves a run from Running to a terminal status. KEYS: meta. ARGV: status,
/// record. Returns the event count and head it finished with. KEYS[2]:
/// the counters hash (absent on a cluster).
const FINISH_RUN: &str = concat!(
    counting!(),
    r#"
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'notfound'} end
if st ~= 'Running' then return {'status', st} end
local old = redis.call('HSTRLEN', KEYS[1], 'rec')
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rec', ARGV[2])
count(KEYS[2], 'bytes', #ARGV[2] - old)
local m = redis.call('HMGET', KEYS[1], 'next', 'head')
return done({'ok', m[1] or '0', m[2] or ''})
"#
);

/// Adds one member (score 0) to every index in KEYS. ARGV: member.
const INDEX_ADD: &str = r#"
for i = 1, #KEYS do redis.call('ZADD', KEYS[i], 0, ARGV[1]) end
return {'ok'}
"#;

/// Creates a record hash unless it exists. KEYS: meta, counters hash
/// (absent on a cluster). ARGV: field/value pairs, the first `rec`.
const CREATE: &str = concat!(
    counting!(),
    r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
redis.call('HSET', KEYS[1], unpack(ARGV))
count(KEYS[2], 'bytes', #ARGV[2])
return done({'ok'})
"#
);

/// Compare-and-set of a session record on its version. KEYS: meta.
/// ARGV: expected version, new version, record, final flag (`1` when the
/// new state is final). Returns the log length and head it saved beside.
/// KEYS[2]: the counters hash (absent on a cluster).
const SAVE_SESSION: &str = concat!(
    counting!(),
    r#"
local v = redis.call('HGET', KEYS[1], 'ver')
if not v then return {'notfound'} end
if v ~= ARGV[1] then return {'moved'} end
local old = redis.call('HSTRLEN', KEYS[1], 'rec')
redis.call('HSET', KEYS[1], 'ver', ARGV[2], 'rec', ARGV[3], 'final', ARGV[4])
count(KEYS[2], 'bytes', #ARGV[3] - old)
local m = redis.call('HMGET', KEYS[1], 'next', 'head')
return done({'ok', m[1] or '0', m[2] or ''})
"#
);

/// Deletes a session record with its log. KEYS: meta, log, idem, counters
/// hash (absent on a cluster).
const DELETE_SESSION: &str = concat!(
    counting!(),
    r#"
local m = redis.call('HMGET', KEYS[1], 'next', 'bytes')
local rec = redis.call('HSTRLEN', KEYS[1], 'rec')
local existed = redis.call('EXISTS', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if existed == 1 then
  count(KEYS[4], 'log_entries', -tonumber(m[1] or '0'))
  count(KEYS[4], 'bytes', -(tonumber(m[2] or '0') + rec))
end
return done({'ok', existed})
"#
);

/// Replaces a whole session log. KEYS: meta, log, idem. ARGV: expected
/// length (or ""), new head, entry count n, n records, then pairs of
/// idempotency key and seq. Refuses a session whose `final` flag is set;
/// the expected length is the recorded one (`next`). KEYS[4]: the
/// counters hash (absent on a cluster).
const REPLACE_LOG: &str = concat!(
    counting!(),
    r#"
local m = redis.call('HMGET', KEYS[1], 'ver', 'next', 'final', 'bytes')
if not m[1] then return {'notfound'} end
if m[3] == '1' then return {'final'} end
local len = m[2] or '0'
if ARGV[1] ~= '' and len ~= ARGV[1] then return {'conflict', len} end
redis.call('DEL', KEYS[2], KEYS[3])
local n = tonumber(ARGV[3])
local bytes = 0
local i = 4
while i < 4 + n do
  local stop = math.min(i + 999, 3 + n)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, stop))
  i = stop + 1
end
for k = 4, 3 + n do bytes = bytes + #ARGV[k] end
redis.call('HSET', KEYS[1], 'bytes', bytes)
count(KEYS[4], 'log_entries', n - tonumber(len))
count(KEYS[4], 'bytes', bytes - tonumber(m[4] or '0'))
local j = 4 + n
while j < #ARGV do
  redis.call('HSET', KEYS[3], ARGV[j], ARGV[j + 1])
  j = j + 2
end
redis.call('HSET', KEYS[1], 'head', ARGV[2], 'next', tostring(n))
return done({'ok'})
"#
);

/// Appends a release record if the history still has the expected length.
/// KEYS: history, counters hash (absent on a cluster). ARGV: expected
/// length, record.
const PROMOTE: &str = concat!(
    counting!(),
    r#"
local n = redis.call('LLEN', KEYS[1])
if tostring(n) ~= ARGV[1] then return {'moved'} end
redis.call('RPUSH', KEYS[1], ARGV[2])
count(KEYS[2], 'release_records', 1)
count(KEYS[2], 'bytes', #ARGV[2])
return done({'ok'})
"#
);

/// Release records with seq < before (all when ""), the `limit` newest,
/// returned oldest first. KEYS: history. ARGV: before, limit.
const HISTORY: &str = r#"
local top = redis.call('LLEN', KEYS[1])
if ARGV[1] ~= '' then
  local b = tonumber(ARGV[1])
  if b < top then top = b end
end
local limit = tonumber(ARGV[2])
if top <= 0 or limit <= 0 then return {} end
local start = top - limit
if start < 0 then start = 0 end
return redis.call('LRANGE', KEYS[1], start, top - 1)
"#;

/// The record already stored for a target, and the replacement chain from
/// a hash. KEYS: records, replacements. ARGV: target, start, max hops.
/// Returns {existing or false, h1, r1, h2, r2, …}; a hash missing from the
/// pairs is not superseded.
const SUP_CHAIN: &str = r#"
local out = {redis.call('HGET', KEYS[1], ARGV[1])}
if ARGV[2] == '' then return out end
local cur = ARGV[2]
local max = tonumber(ARGV[3])
for i = 0, max do
  if cur == ARGV[1] then break end
  local r = redis.call('HGET', KEYS[2], cur)
  if not r then break end
  table.insert(out, cur)
  table.insert(out, r)
  if r == '' then break end
  cur = r
end
return out
"#;

/// Stores a supersession with its agent index, if the target is still free
/// and the chain's tail (the first hash that was not superseded when the
/// cycle check ran) still is not. KEYS: records, replacements, agent index,
/// targets index, counters hash (absent on a cluster). ARGV: target,
/// replacement (or ""), record, order key, tail (or "").
const SUP_PUT: &str = concat!(
    counting!(),
    r#"
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {'exists', existing} end
if ARGV[5] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[5]) == 1 then return {'moved'} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[4])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
count(KEYS[5], 'bytes', #ARGV[3])
return done({'stored'})
"#
);

/// Stores a blob unless it exists, and records that a `put` returned it
/// now (the later of the stored and the given time), so garbage collection
/// waits a whole grace period again. KEYS: data, at, counters hash (absent
/// on a cluster). ARGV: checksummed value, now (ms).
const PUT_BLOB: &str = concat!(
    counting!(),
    r#"
local new = redis.call('SET', KEYS[1], ARGV[1], 'NX')
local at = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > at then redis.call('SET', KEYS[2], ARGV[2]) end
if new then
  count(KEYS[3], 'blob_bytes', #ARGV[1])
  count(KEYS[3], 'bytes', #ARGV[1])
  return done({'ok', 1})
end
return {'ok', 0}
"#
);

/// Deletes a blob (its references stay). KEYS: data, at, counters hash
/// (absent on a cluster). Returns whether it existed.
const DELETE_BLOB: &str = concat!(
    counting!(),
    r#"
local len = redis.call('STRLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
if len == 0 then return {'ok', 0} end
count(KEYS[3], 'blob_bytes', -len)
count(KEYS[3], 'bytes', -len)
return done({'ok', 1})
"#
);

/// The sizes of the targets index and the records hash, read atomically.
/// KEYS: targets index, records.
const SUP_COUNTS: &str = r#"
return {redis.call('ZCARD', KEYS[1]), redis.call('HLEN', KEYS[2])}
"#;

/// Every script, hashed once per open store.
pub(crate) struct Scripts {
    pub(crate) append: Lua,
    pub(crate) append_run: Lua,
    pub(crate) append_session: Lua,
    pub(crate) head: Lua,
    pub(crate) read_list: Lua,
    pub(crate) finish_run: Lua,
    pub(crate) index_add: Lua,
    pub(crate) create: Lua,
    pub(crate) save_session: Lua,
    pub(crate) delete_session: Lua,
    pub(crate) replace_log: Lua,
    pub(crate) promote: Lua,
    pub(crate) history: Lua,
    pub(crate) sup_chain: Lua,
    pub(crate) sup_put: Lua,
    pub(crate) sup_counts: Lua,
    pub(crate) put_blob: Lua,
    pub(crate) delete_blob: Lua,
    /// The lifecycle's scripts.
    pub(crate) life: super::lifecycle::LifeScripts,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            append: Lua::new(APPEND),
            append_run: Lua::new(APPEND_RUN),
            append_session: Lua::new(APPEND_SESSION),
            head: Lua::new(HEAD),
            read_list: Lua::new(READ_LIST),
            finish_run: Lua::new(FINISH_RUN),
            index_add: Lua::new(INDEX_ADD),
            create: Lua::new(CREATE),
            save_session: Lua::new(SAVE_SESSION),
            delete_session: Lua::new(DELETE_SESSION),
            replace_log: Lua::new(REPLACE_LOG),
            promote: Lua::new(PROMOTE),
            history: Lua::new(HISTORY),
            sup_chain: Lua::new(SUP_CHAIN),
            sup_put: Lua::new(SUP_PUT),
            sup_counts: Lua::new(SUP_COUNTS),
            put_blob: Lua::new(PUT_BLOB),
            delete_blob: Lua::new(DELETE_BLOB),
            life: super::lifecycle::LifeScripts::new(),
        }
    }
}
