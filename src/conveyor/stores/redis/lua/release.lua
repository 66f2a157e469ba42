-- release.lua: give leased messages that never started back to the front of their queue.
-- KEYS[1]  the consumer's in-flight hash     KEYS[2] redelivery counts hash
-- ARGV[1..] tags, in the order they would have run
-- The delivery count is kept as it was: a message that never started was not tried.
-- Returns: how many messages went back.
local moved = 0
for i = #ARGV, 1, -1 do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  if value then
    local a = string.find(value, '\n', 1, true)
    local b = string.find(value, '\n', a + 1, true)
    local list = string.sub(value, 1, a - 1)
    local deliveries = tonumber(string.sub(value, a + 1, b - 1))
    local body = string.sub(value, b + 1)
    -- The wake-up first and the HDEL right after the RPUSH: on a cluster, Redis stops a
    -- script at a key it did not declare (the list, the wake zset) while that key's slot
    -- is half moved, and the caller runs it again once the slot has moved; stopped
    -- anywhere, each message is then in flight or queued, never both.
    redis.call('ZADD', string.match(list, '^(.*):%d+$') .. ':wake', 0, 'w')
    redis.call('RPUSH', list, body)
    redis.call('HDEL', KEYS[1], ARGV[i])
    if deliveries > 1 then
      redis.call('HSET', KEYS[2], redis.sha1hex(body), deliveries - 1)
    end
    moved = moved + 1
  end
end
return moved
