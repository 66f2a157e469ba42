-- chord_part.lua: store a chord header task's final result and count it, in one step;
-- the step that counts the last header task also queues the chord's body.
-- KEYS[1]  result list   <p>:result:<id>           (as store_result.lua)
-- KEYS[2]  state string  <p>:state:<id>
-- KEYS[3]  chord hash    <p>:chord:<chord>         size, body, queue, priority, and when the
--                                                  broker shares this Redis: list, wake, queues
-- KEYS[4]  done set      <p>:chord:<chord>:done    header task ids counted so far
-- ARGV[1]  encoded meta  ARGV[2] time to live in ms  ARGV[3] the header task's id
-- Counting is a set, not a counter: a task stored again (a redelivery after its worker
-- died, a duplicate) adds nothing, so the chord completes exactly once.
-- Returns: 0 not complete (or counted before), -1 unknown chord, 1 complete and the body
-- queued here, or {body, queue, priority} complete and the caller must send the body.
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
if redis.call('SADD', KEYS[4], ARGV[3]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[4], ARGV[2])
local chord = redis.call('HMGET', KEYS[3], 'size', 'body', 'queue', 'priority', 'list', 'wake', 'queues')
if not chord[1] then return -1 end
if redis.call('SCARD', KEYS[4]) < tonumber(chord[1]) then return 0 end
if chord[5] then
  -- As enqueue.lua: LPUSH onto the level list, wake one idle consumer.
  redis.call('LPUSH', chord[5], chord[2])
  redis.call('ZADD', chord[6], 0, 'w')
  redis.call('SADD', chord[7], chord[3])
  return 1
end
return { chord[2], chord[3], chord[4] }
