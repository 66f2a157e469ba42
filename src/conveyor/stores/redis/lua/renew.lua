-- renew.lua: extend the leases of live consumers (the worker renews while it lives).
-- KEYS[1]  consumer leases zset
-- ARGV[1]  lease ms   ARGV[2..] consumer ids
-- Returns: the server time in ms.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
return now
