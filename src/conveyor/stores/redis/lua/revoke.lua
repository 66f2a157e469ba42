-- revoke.lua: record revocations that every worker honours until they expire.
-- KEYS[1] revoked zset (member task id, score expiry ms)   KEYS[2] terminate hash (id -> signal)
-- KEYS[3] version counter
-- ARGV[1] time to live in ms   ARGV[2] signal name to terminate running tasks, or ''
-- ARGV[3..] task ids
-- Expired revocations are pruned here, so the set only holds live ones.
-- Returns: the new version.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local expires = now + tonumber(ARGV[1])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], expires, ARGV[i])
  if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[i], ARGV[2]) end
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
return redis.call('INCR', KEYS[3])
