-- store_result.lua: record a task's final state and wake everyone waiting on it.
-- KEYS[1]  result list   <p>:result:<id>  (one element: the encoded meta; waiters block on it)
-- KEYS[2]  state string  <p>:state:<id>   (interim states: RECEIVED, STARTED, RETRY, custom)
-- ARGV[1]  encoded meta  ARGV[2] time to live in ms
-- Waiters use BLMOVE result result, which returns the element and leaves it in place,
-- so every waiter wakes on the one RPUSH below.
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
