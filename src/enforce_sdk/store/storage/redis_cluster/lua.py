"""Lua scripts of the Redis Cluster backend; each touches keys of one hash slot only.

Entity scripts run on the entity's slot (its hash, audit set and labeled marker
share the `{entity}` hash tag); feed scripts run on the namespace's feed slot
(sequence counter, change feed, counts, pending index, batch journal). Values
that carry a sequence number are written as `"<seq>|..."` from the batch base
the commit allocated plus the offset the plan gave. docs/redis-cluster.md has
the key layout and the commit protocol.
"""

from __future__ import annotations

# KEYS[1] entity hash. ARGV: lock value "<txid>|<ms>", expected version.
# -> {2,""} locked for us | {0, holder} locked by another batch | {1, version} stale version
PREPARE = """
local lk = redis.call('HGET', KEYS[1], '_lk')
if lk then
  if lk == ARGV[1] then
    -- A retry of ours: rewrite it so this connection's WAIT covers the first write.
    redis.call('HSET', KEYS[1], '_lk', lk)
    return {2, ''}
  end
  return {0, lk}
end
local v = redis.call('HGET', KEYS[1], '_v') or '0'
if v ~= ARGV[2] then return {1, v} end
redis.call('HSET', KEYS[1], '_lk', ARGV[1])
return {2, ''}
"""

# KEYS[1] entity hash. ARGV: "<txid>|". Drops the lock if that batch holds it.
RELEASE = """
local lk = redis.call('HGET', KEYS[1], '_lk')
if lk and string.sub(lk, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('HDEL', KEYS[1], '_lk')
  return 1
end
return 0
"""

# KEYS: entity hash, audit zset, labeled marker.
# ARGV: "<txid>|", base, last offset (-1: no change), labeled (1/0),
#       ndel, sources..., nset, (source, offset, json)..., naudit, (offset, json)...
# Applies the batch's part for this entity only if the batch still holds the lock,
# so running it twice (writer and a reader rolling forward) is harmless.
MATERIALISE = """
local lk = redis.call('HGET', KEYS[1], '_lk')
if not lk or string.sub(lk, 1, string.len(ARGV[1])) ~= ARGV[1] then
  -- Already applied (by a reader rolling forward): rewrite the version so this
  -- connection's WAIT also covers that earlier, possibly unreplicated, write.
  local v = redis.call('HGET', KEYS[1], '_v')
  if v then redis.call('HSET', KEYS[1], '_v', v) end
  return 0
end
local base = tonumber(ARGV[2])
local i = 5
local n = tonumber(ARGV[i]); i = i + 1
for k = 1, n do
  redis.call('HDEL', KEYS[1], 's:' .. ARGV[i]); i = i + 1
end
n = tonumber(ARGV[i]); i = i + 1
for k = 1, n do
  local seq = string.format('%d', base + tonumber(ARGV[i + 1]))
  redis.call('HSET', KEYS[1], 's:' .. ARGV[i], seq .. '|' .. ARGV[i + 2])
  i = i + 3
end
n = tonumber(ARGV[i]); i = i + 1
for k = 1, n do
  local seq = string.format('%d', base + tonumber(ARGV[i]))
  redis.call('ZADD', KEYS[2], seq, seq .. '|' .. ARGV[i + 1])
  i = i + 2
end
local last = tonumber(ARGV[3])
if last >= 0 then
  redis.call('HSET', KEYS[1], '_v', string.format('%d', base + last))
  if ARGV[4] == '1' then redis.call('SET', KEYS[3], '1') else redis.call('DEL', KEYS[3]) end
end
redis.call('HDEL', KEYS[1], '_lk')
return 1
"""

# KEYS: seq, changes, counts, pending index, pending values, tx status, tx payload, open txs,
#       [idempotency record].
# ARGV: txid, n, lock_ms, payload, d_active, d_pending, max_age_ms,
#       n x (change json, at_us), nadd, (member, offset, json)..., ndel, members...,
#       [record without its seq, record ttl ms].
# With an idempotency record key, the record is written with the commit (prefixed
# with the batch's last seq), and -2 is returned, committing nothing, if it exists.
# The commit point of a batch: allocates n sequence numbers and publishes the
# change records, counts and pending index together. Idempotent per txid;
# returns the base seq, or -1 if the batch was aborted by another process or
# its locks are older than max_age_ms by the server's clock (others may abort
# a batch once its locks are twice that old, so a writer that stalled between
# prepare and commit can never commit after its locks were taken away).
COMMIT = """
local st = redis.call('GET', KEYS[6])
if st then
  if string.sub(st, 1, 2) == 'C:' then
    -- A retry of ours: rewrite the status so this connection's WAIT covers the commit.
    redis.call('SET', KEYS[6], st)
    return tonumber(string.sub(st, 3))
  end
  return -1
end
if #KEYS >= 9 and redis.call('EXISTS', KEYS[9]) == 1 then return -2 end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now_ms - tonumber(ARGV[3]) > tonumber(ARGV[7]) then return -1 end
local n = tonumber(ARGV[2])
local last = redis.call('INCRBY', KEYS[1], n)
local base = last - n + 1
redis.call('SET', KEYS[6], 'C:' .. string.format('%d', base))
redis.call('SET', KEYS[7], ARGV[4])
redis.call('ZADD', KEYS[8], now_ms, ARGV[1])
local i = 8
for k = 0, n - 1 do
  local seq = string.format('%d', base + k)
  redis.call('ZADD', KEYS[2], seq, seq .. '|' .. ARGV[i + 1] .. '|' .. ARGV[i])
  i = i + 2
end
redis.call('HINCRBY', KEYS[3], 'active', ARGV[5])
redis.call('HINCRBY', KEYS[3], 'pending', ARGV[6])
local m = tonumber(ARGV[i]); i = i + 1
for k = 1, m do
  local seq = string.format('%d', base + tonumber(ARGV[i + 1]))
  redis.call('ZADD', KEYS[4], 0, ARGV[i])
  redis.call('HSET', KEYS[5], ARGV[i], seq .. '|' .. ARGV[i + 2])
  i = i + 3
end
m = tonumber(ARGV[i]); i = i + 1
for k = 1, m do
  redis.call('ZREM', KEYS[4], ARGV[i])
  redis.call('HDEL', KEYS[5], ARGV[i])
  i = i + 1
end
if #KEYS >= 9 then
  redis.call('SET', KEYS[9], string.format('%d', last) .. '|' .. ARGV[i], 'PX', ARGV[i + 1])
end
return base
"""

# KEYS: tx status, tx payload, open txs. ARGV: txid, status ttl seconds.
FINISH = """
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: tx status. ARGV: ttl seconds. Marks a batch that never committed as aborted,
# so its writer can no longer commit it; returns the status that won.
ABORT = """
local st = redis.call('GET', KEYS[1])
if st then return st end
redis.call('SET', KEYS[1], 'A', 'EX', ARGV[1])
return 'A'
"""

# KEYS: seq, durable head, changes. ARGV: after, limit.
# -> {durable head, seq counter, oldest member at or below it or "", records}
# Only records at or below the durable head are served: a record above it may
# still be lost in a failover of the feed master, and its number handed out again.
FEED_PAGE = """
local d = redis.call('GET', KEYS[2]) or '0'
local s = redis.call('GET', KEYS[1]) or '0'
local recs = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], d, 'LIMIT', 0, ARGV[2])
local first = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', d, 'LIMIT', 0, 1)
return {d, s, first[1] or '', recs}
"""

# KEYS: seq, durable head. ARGV: seq known to be replicated.
# Raises the durable head to ARGV[1] (never lowers it, never past the counter,
# which a failover may have lowered). Callers pass only a number whose commit
# was acknowledged by WAIT: WAIT counts replication offsets, so every commit
# numbered below it on this master was replicated too. -> the durable head
RAISE_DURABLE = """
local s = tonumber(redis.call('GET', KEYS[1]) or '0')
local d = tonumber(redis.call('GET', KEYS[2]) or '0')
local x = math.min(tonumber(ARGV[1]), s)
if x > d then
  redis.call('SET', KEYS[2], string.format('%d', x))
  d = x
end
return d
"""

# KEYS: seq. Rewrites the counter as it is, so that a WAIT on this connection
# covers every commit made so far on this master. -> the counter
TOUCH_SEQ = """
local s = redis.call('GET', KEYS[1])
if not s then return 0 end
redis.call('SET', KEYS[1], s)
return tonumber(s)
"""

# KEYS: changes. ARGV: cutoff_us, page. Drops the longest prefix of the feed older
# than the cutoff (so the retained feed never has a hole). -> {dropped, more}
PRUNE = """
local recs = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local cutoff = tonumber(ARGV[1])
local k = 0
for _, m in ipairs(recs) do
  local at = tonumber(string.match(m, '^%d+|(-?%d+)|'))
  if at >= cutoff then break end
  k = k + 1
end
if k > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, k - 1) end
if k == #recs and k > 0 then return {k, 1} end
return {k, 0}
"""

# KEYS: pending index, pending values. ARGV: lex start, limit. -> {member, value, ...}
PENDING_PAGE = """
local ms = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, ARGV[2])
local out = {}
for _, m in ipairs(ms) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGET', KEYS[2], m) or ''
end
return out
"""

ALL = {
    "prepare": PREPARE,
    "release": RELEASE,
    "materialise": MATERIALISE,
    "commit": COMMIT,
    "finish": FINISH,
    "abort": ABORT,
    "feed_page": FEED_PAGE,
    "raise_durable": RAISE_DURABLE,
    "touch_seq": TOUCH_SEQ,
    "prune": PRUNE,
    "pending_page": PENDING_PAGE,
}
