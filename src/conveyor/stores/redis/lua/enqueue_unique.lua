-- enqueue_unique.lua: claim an idempotency key and queue one message, or do nothing.
-- KEYS[1]  the level list   KEYS[2] the ETA zset   KEYS[3] the wake zset   (as enqueue.lua)
-- KEYS[4]  the key's claim  <p>:unique:<key>   (string: first task id, PX window)
-- KEYS[5]  set of known queue names <p>:queues (only read when ARGV[1] is not '')
-- ARGV[1]  queue name to add to the known set, or ''
-- ARGV[2]  priority level   ARGV[3] countdown ms or -1   ARGV[4] epoch due ms or -1
-- ARGV[5]  task id          ARGV[6] window ms            ARGV[7] message body
-- Only on one Redis: on a cluster the claim and the queue are in two slots, so the
-- claim (claim_unique.lua) and the publish are two steps there.
-- Returns: '' when the message was queued, else the task id that holds the key.
local first = redis.call('GET', KEYS[4])
if first then return first end
redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
if ARGV[1] ~= '' then redis.call('SADD', KEYS[5], ARGV[1]) end
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
  redis.call('LPUSH', KEYS[1], ARGV[7])
  redis.call('ZADD', KEYS[3], 0, 'w')
  return ''
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[2], due, level .. ARGV[7])
if head[2] == nil or due < tonumber(head[2]) then
  redis.call('ZADD', KEYS[3], 0, 'w')
end
return ''
