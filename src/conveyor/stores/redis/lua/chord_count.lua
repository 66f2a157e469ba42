-- chord_count.lua: count a chord header task whose final result is stored; the call that
-- counts the last one gets the chord's body to send. chord_part.lua without the result:
-- on a Redis Cluster the result lives in the task's slot ({t:<id>}) and the chord in its
-- own ({c:<chord>}), so the result is stored first (store_result.lua) and counted here.
-- A crash between the two leaves a stored, uncounted result: the task is redelivered
-- (its ack was not sent yet), stored again and counted then.
-- KEYS[1]  chord hash    <p>:chord:{c:<chord>}        size, body, queue, priority
-- KEYS[2]  done set      <p>:chord:{c:<chord>}:done   header task ids counted so far
-- ARGV[1]  time to live in ms   ARGV[2] the header task's id
-- Returns: 0 not complete (or counted before), -1 unknown chord, or {body, queue, priority}.
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[1])
local chord = redis.call('HMGET', KEYS[1], 'size', 'body', 'queue', 'priority')
if not chord[1] then return -1 end
if redis.call('SCARD', KEYS[2]) < tonumber(chord[1]) then return 0 end
return { chord[2], chord[3], chord[4] }
