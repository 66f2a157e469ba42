-- lease_drop.lua: give a named lease up, only if this owner holds it.
-- KEYS[1]  the lease key  <p>:lease:<name>
-- ARGV[1]  owner
-- Returns: 1 when it was dropped, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
