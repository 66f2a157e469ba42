-- slot.lua: take one of N running slots of a concurrency limit, for one delivery.
-- KEYS[1]  <p>:slots:<key>     set of holders, each "<consumer id>\n<delivery tag>"
-- KEYS[2]  <p>:consumers       consumer leases (score = deadline ms)
-- ARGV[1]  limit   ARGV[2] holder   ARGV[3] key prefix (in-flight hashes: <p>:inflight:<consumer>)
-- ARGV[4]  '1' when the deliveries live in this Redis (check the tag is still in flight),
--          '0' for a coordinator apart from its transport (the consumer's lease alone)
-- When the set is full, holders that are gone are dropped first: a holder lives only
-- while its consumer's lease does and (tag not empty) the delivery is still in its
-- in-flight hash, so a SIGKILLed worker or a lost release never leaks a slot.
-- Returns: 1 when the slot is held, 0 when all are taken.
if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 1 then return 1 end
local limit = tonumber(ARGV[1])
if redis.call('SCARD', KEYS[1]) >= limit then
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  for _, holder in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local cut = string.find(holder, '\n', 1, true)
    local consumer = string.sub(holder, 1, cut - 1)
    local tag = string.sub(holder, cut + 1)
    local deadline = redis.call('ZSCORE', KEYS[2], consumer)
    local alive = deadline and tonumber(deadline) > now
    if alive and tag ~= '' and ARGV[4] == '1' then
      alive = redis.call('HEXISTS', ARGV[3] .. ':inflight:' .. consumer, tag) == 1
    end
    if not alive then redis.call('SREM', KEYS[1], holder) end
  end
  if redis.call('SCARD', KEYS[1]) >= limit then return 0 end
end
redis.call('SADD', KEYS[1], ARGV[2])
return 1
