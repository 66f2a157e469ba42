-- enqueue.lua: put messages on a queue now, or hold them until they are due.
-- KEYS[1]  the level list     <base>:<level>   (<base> = <p>:queue:<name>, or <p>:{q:<name>} on a cluster)
-- KEYS[2]  the ETA zset       <base>:eta       (score = due ms, member = level digit .. body)
-- KEYS[3]  the wake zset      <base>:wake      (one member; idle consumers block on it)
-- KEYS[4]  set of known queue names <p>:queues (only read when ARGV[1] is not '': on a
--          cluster it lives in another slot and is written apart, so it is not passed)
-- ARGV[1]  queue name to add to the known set, or '' when this producer already did
-- ARGV[2]  priority level (one digit, 0 = served first)
-- ARGV[3]  countdown in ms, or -1               ARGV[4] absolute due time in epoch ms, or -1
-- ARGV[5..] message bodies
-- Consumers pop from the right, so LPUSH keeps each level FIFO.
-- Returns: 0 when queued now, else the due time in ms.
if ARGV[1] ~= '' then redis.call('SADD', KEYS[4], ARGV[1]) end
local level = ARGV[2]
local countdown = tonumber(ARGV[3])
local eta = tonumber(ARGV[4])
local due = -1
if countdown >= 0 or eta >= 0 then
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  if countdown >= 0 then due = now + countdown else due = eta end
  if due <= now then due = -1 end
end
if due < 0 then
  redis.call('LPUSH', KEYS[1], unpack(ARGV, 5))
  redis.call('ZADD', KEYS[3], 0, 'w')
  return 0
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[2], due, level .. ARGV[i])
end
-- Wake a waiting consumer only when this is now the earliest due message, so it can
-- shorten its wait; a million later ETAs wake nobody.
if first[2] == nil or due < tonumber(first[2]) then
  redis.call('ZADD', KEYS[3], 0, 'w')
end
return due
