//! The engine's server-side scripts. Each touches only the store's keys
//! (`KEYS[1]`, the sorted set of members; `KEYS[2]`, the hash of values;
//! `KEYS[3]`, the readers' hold), which share one hash tag and so one
//! cluster slot. A member is
//! a table's one-byte id followed by the key, so one lexicographic range
//! of the set is one key range of one table.

use std::sync::OnceLock;

use super::conn::Lua;

/// What every script starts with: the store's two keys.
const KEYS: &str = "local z, h = KEYS[1], KEYS[2]\n";

/// Helpers of the scripts that read pages: a page of members, their
/// values (`HMGET` in slices, as Lua's `unpack` is bounded), and the
/// digest of a page that the engine also computes (see
/// `remote::page_digest`). `APPLY` defines them only in the branch that
/// checks a page: a closure made on every call costs the server a
/// measurable part of an append.
const HELPERS: &str = r#"
local function page(min, max, dir, limit)
  if dir == 'f' then
    return redis.call('ZRANGEBYLEX', z, min, max, 'LIMIT', 0, limit)
  end
  return redis.call('ZREVRANGEBYLEX', z, max, min, 'LIMIT', 0, limit)
end
local function values(ks)
  local out = {}
  for i = 1, #ks, 500 do
    local vs = redis.call('HMGET', h, unpack(ks, i, math.min(i + 499, #ks)))
    for j = 1, #vs do out[#out + 1] = vs[j] end
  end
  return out
end
local function digest(ks, vs)
  local parts = {}
  for i = 1, #ks do
    local v = vs[i] or ''
    parts[#parts + 1] = #ks[i] .. ':' .. ks[i] .. #v .. ':' .. v
  end
  return redis.sha1hex(table.concat(parts))
end
"#;

/// `ARGV`: min, max, direction (`f`/`r`), limit. Returns the page as
/// `member, value, member, value…` (a missing value comes back nil).
const SCAN: &str = r#"
local ks = page(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]))
local vs = values(ks)
local out = {}
for i = 1, #ks do
  out[2 * i - 1] = ks[i]
  out[2 * i] = vs[i]
end
return out
"#;

/// `ARGV`: min, max, page size. Returns `{entries, value bytes, last
/// member}` of at most one page, so a whole table is measured in slices
/// that never block the server for long.
const MEASURE: &str = r#"
local ks = redis.call('ZRANGEBYLEX', z, ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local bytes = 0
for i = 1, #ks do bytes = bytes + redis.call('HSTRLEN', h, ks[i]) end
return {#ks, bytes, ks[#ks] or ''}
"#;

/// `ARGV`: the number of guards, the guards, then the writes, each an
/// opcode and its operands. Checks every guard against the current data
/// and, only if all hold, applies the writes in order. Returns `{1}`, or
/// `{0, n}` when guard `n` (from 1) failed and nothing was written.
///
/// Guards: `a member` absent; `v member value` exactly this value;
/// `h member sha1` a value with this SHA-1 (hex); `s min max dir limit
/// sha1` a scan page with this digest; `c min max count` this many
/// members. Writes: `p member value` put; `d member` delete; `r min max`
/// delete a range. The line `HELPERS` is replaced by [`HELPERS`] when the
/// script is built. (One `HSET` per put: batching puts into one `HSET`
/// and one `ZADD` built Lua tables on every call and made an append
/// slower.) A job that writes while a reader holds the store
/// still (`KEYS[3]` exists, see `RELEASE`) writes nothing and gets `{2}`.
const APPLY: &str = r#"
local a, i = ARGV, 2
for g = 1, tonumber(a[1]) do
  local op, ok = a[i], false
  if op == 'a' then
    ok = redis.call('HEXISTS', h, a[i + 1]) == 0
    i = i + 2
  elseif op == 'v' then
    ok = redis.call('HGET', h, a[i + 1]) == a[i + 2]
    i = i + 3
  elseif op == 'h' then
    local v = redis.call('HGET', h, a[i + 1])
    ok = v and redis.sha1hex(v) == a[i + 2]
    i = i + 3
  elseif op == 's' then
    HELPERS
    local ks = page(a[i + 1], a[i + 2], a[i + 3], tonumber(a[i + 4]))
    ok = digest(ks, values(ks)) == a[i + 5]
    i = i + 6
  elseif op == 'c' then
    ok = redis.call('ZLEXCOUNT', z, a[i + 1], a[i + 2]) == tonumber(a[i + 3])
    i = i + 4
  else
    return redis.error_reply('stowage: unknown guard ' .. tostring(op))
  end
  if not ok then return {0, g} end
end
if i <= #a and redis.call('EXISTS', KEYS[3]) == 1 then return {2} end
while i <= #a do
  local op = a[i]
  if op == 'p' then
    if redis.call('HSET', h, a[i + 1], a[i + 2]) == 1 then
      redis.call('ZADD', z, 0, a[i + 1])
    end
    i = i + 3
  elseif op == 'd' then
    if redis.call('HDEL', h, a[i + 1]) == 1 then redis.call('ZREM', z, a[i + 1]) end
    i = i + 2
  elseif op == 'r' then
    local ks = redis.call('ZRANGEBYLEX', z, a[i + 1], a[i + 2])
    for j = 1, #ks, 500 do
      redis.call('HDEL', h, unpack(ks, j, math.min(j + 499, #ks)))
    end
    redis.call('ZREMRANGEBYLEX', z, a[i + 1], a[i + 2])
    i = i + 3
  else
    return redis.error_reply('stowage: unknown write ' .. tostring(op))
  end
end
return {1}
"#;

/// `KEYS[1]`: the hold key; `ARGV[1]`: the token that took it. Deletes
/// the hold if it is still the caller's. A reader whose consistency
/// check failed again and again takes the hold (`SET NX PX`), which keeps
/// every write out until it ran its job once and released the hold (or
/// the hold expired), so reads finish under any write load.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;

/// The scripts (body and SHA-1, for `EVALSHA`), built once per process.
pub(super) struct Scripts {
    pub(super) scan: Lua,
    pub(super) measure: Lua,
    pub(super) apply: Lua,
    pub(super) release: Lua,
}

impl Scripts {
    pub(super) fn get() -> &'static Scripts {
        static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
        SCRIPTS.get_or_init(|| Scripts {
            scan: Lua::new(format!("{KEYS}{HELPERS}{SCAN}")),
            measure: Lua::new(format!("{KEYS}{MEASURE}")),
            apply: Lua::new(format!("{KEYS}{}", APPLY.replacen("HELPERS", HELPERS, 1))),
            release: Lua::new(RELEASE.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_gets_the_helpers_in_its_page_branch_only() {
        let apply = &Scripts::get().apply.body;
        assert!(!apply.contains("\n    HELPERS\n"));
        let helpers = apply.find("local function page").unwrap();
        assert!(helpers > apply.find("op == 's'").unwrap());
    }
}
