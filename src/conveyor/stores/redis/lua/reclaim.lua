-- reclaim.lua: return every delivery held by a dead (or retiring) consumer to its queue.
-- KEYS[1]  consumer leases zset   KEYS[2] redelivery counts hash
-- ARGV[1]  key prefix (in-flight hashes are <prefix>:inflight:<consumer>)
-- ARGV[2]  a consumer id to reclaim now, or '' for every consumer whose lease expired
-- ARGV[3]  the most consumers to reclaim in one call
-- The messages go to the front of their level, and their delivery count is remembered
-- so a task that keeps killing its worker can be recognised.
-- Returns: how many messages went back.
local victims
if ARGV[2] ~= '' then
  victims = { ARGV[2] }
else
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  victims = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
end
local moved = 0
for _, consumer in ipairs(victims) do
  local inflight = ARGV[1] .. ':inflight:' .. consumer
  local entries = redis.call('HGETALL', inflight)
  -- Newest tag first: each goes to the front, so the oldest ends up served first.
  local order = {}
  for i = 1, #entries, 2 do order[#order + 1] = i end
  table.sort(order, function(x, y) return tonumber(entries[x]) > tonumber(entries[y]) end)
  for _, i in ipairs(order) do
    local value = entries[i + 1]
    local a = string.find(value, '\n', 1, true)
    local b = string.find(value, '\n', a + 1, true)
    local list = string.sub(value, 1, a - 1)
    local deliveries = tonumber(string.sub(value, a + 1, b - 1))
    local body = string.sub(value, b + 1)
    -- One message at a time, the wake-up first (see release.lua): a script stopped at a
    -- key of a half-moved slot leaves each message in flight or queued, never both.
    redis.call('ZADD', string.match(list, '^(.*):%d+$') .. ':wake', 0, 'w')
    redis.call('RPUSH', list, body)
    redis.call('HDEL', inflight, entries[i])
    redis.call('HSET', KEYS[2], redis.sha1hex(body), deliveries)
    moved = moved + 1
  end
  -- The in-flight hash went with its last field.
  redis.call('ZREM', KEYS[1], consumer)
end
if moved > 0 then redis.call('PEXPIRE', KEYS[2], 604800000) end
return moved
