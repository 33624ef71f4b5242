//! The Lua scripts behind `RedisState`'s atomic steps: leases (take, renew,
//! record a claim, give back), the live-instance heartbeat, and the writes
//! of a table's state, each of which first checks that the writer's claim
//! is still in the table's lease (`<owner> <token>`) and returns -1 if not,
//! so an instance that lost a table can never move its version or reset
//! its flag.

/// Heartbeat: KEYS[1] the instances sorted set; ARGV[1] instance id,
/// ARGV[2] TTL in ms. Drops expired instances (by Redis's own clock) and
/// returns the live ones, sorted by id.
pub const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(live)
return live
";

/// Take or renew: KEYS the leases; ARGV[1] owner, ARGV[2] TTL in ms. Per
/// lease: `acquired` (it was free), `renewed` (the owner held it) or
/// `held <value>`.
pub const ACQUIRE: &str = r"
local out = {}
local mine = ARGV[1] .. ' '
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if not v then
    redis.call('SET', k, mine .. '0', 'PX', ARGV[2])
    out[i] = 'acquired'
  elseif string.sub(v, 1, #mine) == mine then
    redis.call('PEXPIRE', k, ARGV[2])
    out[i] = 'renewed'
  else
    out[i] = 'held ' .. v
  end
end
return out
";

/// Records a claim in a lease its owner holds, keeping the TTL: KEYS[1]
/// lease; ARGV[1] owner, ARGV[2] the claim (`<owner> <token>`). 1 or 0.
pub const SET_CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
local mine = ARGV[1] .. ' '
if v and string.sub(v, 1, #mine) == mine then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl <= 0 then return 0 end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
  return 1
end
return 0
";

/// Gives leases back: KEYS the leases; ARGV[1] owner.
pub const RELEASE: &str = r"
local mine = ARGV[1] .. ' '
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and string.sub(v, 1, #mine) == mine then redis.call('DEL', k) end
end
return 0
";

/// SET of one table key by its owner: KEYS[1] lease, KEYS[2] key; ARGV[1]
/// claim, ARGV[2] value.
pub const GUARDED_SET: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
";

/// Version + identity + compare-and-reset of `force_full_load`, by the
/// table's owner: KEYS version, force flag, identity, lease; ARGV version,
/// identity, forced ("1"/"0"), claim. The flag goes back to "false" only if
/// the load started forced and the flag still says "true" (as `parse_flag`
/// reads it).
pub const FINISH_FULL_LOAD: &str = r"
if redis.call('GET', KEYS[4]) ~= ARGV[4] then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
local force = redis.call('GET', KEYS[2])
local on = force and string.lower(string.match(force, '^%s*(.-)%s*$')) == 'true'
if ARGV[3] == '1' and on then
  redis.call('SET', KEYS[2], 'false')
  return 1
end
return 0
";

/// Moves idle tables' versions, each on its own terms: KEYS per table its
/// lease then its version key; ARGV per table the claim, `from` and `to`.
/// A version moves only while the lease holds the claim and the key says
/// `from` (spaces around it ignored, as `parse_version` reads it).
/// Returns the (1-based) positions of the tables moved.
pub const ADVANCE: &str = r"
local out = {}
for i = 1, #KEYS / 2 do
  local lease, key = KEYS[2 * i - 1], KEYS[2 * i]
  local claim, from, to = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local v = redis.call('GET', key)
  if v and redis.call('GET', lease) == claim and string.match(v, '^%s*(.-)%s*$') == from then
    redis.call('SET', key, to)
    table.insert(out, i)
  end
end
return out
";

/// Moves a table's keys to its new name, by the owner of the old name:
/// KEYS[1] lease, then the old keys, then the new ones (same count);
/// ARGV[1] claim.
pub const RENAME: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = (#KEYS - 1) / 2
for i = 2, n + 1 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[i + n])
  end
end
return 1
";

/// Every live instance's published statuses: KEYS[1] the instances sorted
/// set; ARGV[1] the status key prefix. Returns id, JSON, id, JSON, …
pub const STATUSES: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then
    table.insert(out, id)
    table.insert(out, v)
  end
end
return out
";
