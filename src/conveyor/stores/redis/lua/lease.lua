-- lease.lua: take a named lease, or renew it for the owner that holds it (compare-and-set).
-- KEYS[1]  the lease key  <p>:lease:<name>   (string: the owner, expiring with the lease)
-- ARGV[1]  owner   ARGV[2] lease ms
-- Touches only KEYS[1]: SET NX PX when free; PEXPIRE when ARGV[1] holds it.
-- Returns: 1 when ARGV[1] holds the lease now, 0 when another owner does.
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
