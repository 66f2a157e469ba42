-- defer.lua: give a leased message that did not start back to its queue, due later.
-- KEYS[1]  the consumer's in-flight hash   KEYS[2] redelivery counts hash
-- ARGV[1]  tag   ARGV[2] delay ms
-- Touches the message's <base>:eta zset (member = level digit .. body, as enqueue.lua
-- writes it) and <base>:wake, both named from the list key kept in the in-flight record.
-- It was not tried, so its delivery count is given back, as release.lua does.
-- Returns: 1 when deferred, 0 when the tag was not leased (any more).
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
local a = string.find(value, '\n', 1, true)
local b = string.find(value, '\n', a + 1, true)
local list = string.sub(value, 1, a - 1)
local deliveries = tonumber(string.sub(value, a + 1, b - 1))
local body = string.sub(value, b + 1)
local base, level = string.match(list, '^(.*):(%d+)$')
local t = redis.call('TIME')
local due = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2])
local eta_key = base .. ':eta'
local head = redis.call('ZRANGE', eta_key, 0, 0, 'WITHSCORES')
redis.call('ZADD', eta_key, due, level .. body)
if deliveries > 1 then
  redis.call('HSET', KEYS[2], redis.sha1hex(body), deliveries - 1)
end
redis.call('HDEL', KEYS[1], ARGV[1])
if head[2] == nil or due < tonumber(head[2]) then
  redis.call('ZADD', base .. ':wake', 0, 'w')
end
return 1
