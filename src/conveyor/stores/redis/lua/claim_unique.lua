-- claim_unique.lua: claim an idempotency key for a send, unless a live claim holds it.
-- Used by a coordinator apart from the transport (the same store uses enqueue_unique.lua,
-- which also queues the message in the same step).
-- KEYS[1]  the key's claim  <p>:unique:<key>   (string: first task id, PX window)
-- ARGV[1]  task id   ARGV[2] window ms
-- Returns: '' when claimed now, else the task id that holds the key.
local first = redis.call('GET', KEYS[1])
if first then return first end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
