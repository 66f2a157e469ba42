-- fetch.lua: lease up to `limit` messages to one consumer, promoting due ETA messages.
-- KEYS[1]  this consumer's in-flight hash   <p>:inflight:<consumer>   tag -> list .. '\n' .. deliveries .. '\n' .. body
-- KEYS[2]  consumer leases zset             <p>:consumers             member consumer, score lease deadline ms
-- KEYS[3]  redelivery counts hash           <p>:redeliveries          sha1(body) -> deliveries so far
-- KEYS[4..] per queue, in the order to serve them, a group of 2 + levels keys:
--          <base>:eta, <base>:wake, <base>:0 .. <base>:<levels - 1>
--          (on a cluster one queue per call, KEYS[1..3] in that queue's slot too)
-- ARGV[1]  consumer id   ARGV[2] lease ms   ARGV[3] limit   ARGV[4] last tag used   ARGV[5] levels
-- Returns: { now_ms, next_eta_ms or -1, then per message: tag, queue index (1-based), level, deliveries, body }
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])

local limit = tonumber(ARGV[3])
local tag = tonumber(ARGV[4])
local levels = tonumber(ARGV[5])
local group = 2 + levels
local counted = redis.call('EXISTS', KEYS[3]) == 1
local out = { now, -1 }
local got = 0
local next_eta = -1

-- Lease up to n messages from one level list, appending them to the reply.
local function take(qi, list, level, n)
  local popped = redis.call('RPOP', list, n)
  if not popped then return 0 end
  for _, body in ipairs(popped) do
    local deliveries = 1
    if counted then
      local digest = redis.sha1hex(body)
      local seen = redis.call('HGET', KEYS[3], digest)
      if seen then
        deliveries = tonumber(seen) + 1
        redis.call('HDEL', KEYS[3], digest)
      end
    end
    tag = tag + 1
    redis.call('HSET', KEYS[1], tag, list .. '\n' .. deliveries .. '\n' .. body)
    out[#out + 1] = tag
    out[#out + 1] = qi
    out[#out + 1] = level
    out[#out + 1] = deliveries
    out[#out + 1] = body
  end
  return #popped
end

for first_key = 4, #KEYS, group do
  local eta_key = KEYS[first_key]
  local level_key = first_key + 2  -- KEYS[level_key + level] is that level's list
  -- Due ETA messages go to the front of their level: they are already late.
  local due = redis.call('ZRANGEBYSCORE', eta_key, '-inf', now, 'LIMIT', 0, 500)
  if #due > 0 then
    for _, member in ipairs(due) do
      redis.call('RPUSH', KEYS[level_key + tonumber(string.sub(member, 1, 1))], string.sub(member, 2))
    end
    redis.call('ZREM', eta_key, unpack(due))
  end
  local head = redis.call('ZRANGE', eta_key, 0, 0, 'WITHSCORES')
  if head[2] then
    local score = tonumber(head[2])
    if next_eta < 0 or score < next_eta then next_eta = score end
  end
end

-- With several queues, first one message from each (its most urgent level), in the
-- given order: a queue with a backlog then never fills a whole batch while another
-- queue's message waits behind it (it waits for one batch of one consumer at most).
if #KEYS - 3 > group then
  for first_key = 4, #KEYS, group do
    if got >= limit then break end
    local qi = (first_key - 4) / group + 1
    for level = 0, levels - 1 do
      if take(qi, KEYS[first_key + 2 + level], level, 1) > 0 then
        got = got + 1
        break
      end
    end
  end
end
-- Then fill the batch queue by queue, most urgent level first.
for first_key = 4, #KEYS, group do
  if got >= limit then break end
  local qi = (first_key - 4) / group + 1
  for level = 0, levels - 1 do
    got = got + take(qi, KEYS[first_key + 2 + level], level, limit - got)
    if got >= limit then break end
  end
end
out[2] = next_eta
-- A full batch means more may be waiting: pass the wake-up on to another consumer.
if got >= limit then
  for first_key = 4, #KEYS, group do redis.call('ZADD', KEYS[first_key + 1], 0, 'w') end
end
return out
