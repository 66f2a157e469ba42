-- rate.lua: a start slot of a rate limit, by GCRA with a burst of one (Celery's bucket
-- holds one token too). Every call takes the next free slot, now or later: a message
-- that must wait is deferred to exactly its slot, which it keeps (KEYS[2]) so that it
-- runs when it comes back instead of queueing again.
-- KEYS[1]  <p>:rate:<task>             string: theoretical arrival time (ms) of the next slot
-- KEYS[2]  <p>:ratehold:<task id>      string: set while a deferred message holds its slot
-- ARGV[1]  emission interval ms (1000 / rate per second)
-- Returns: 0 to start now, else the ms until this message's slot.
if redis.call('DEL', KEYS[2]) == 1 then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
redis.call('SET', KEYS[1], string.format('%.3f', tat + interval),
  'PX', math.ceil(wait + interval) + 1000)
if wait < 1 then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', math.ceil(wait) + 60000)
return math.ceil(wait)
