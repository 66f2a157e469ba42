-- append_events.lua: add batches of events to the capped event stream, one entry each.
-- KEYS[1] the event stream
-- ARGV[1] about how many events to keep
-- ARGV[2], ARGV[3], ... pairs: how many events a batch holds, the batch (JSON lines
--   joined by '\n')
-- An entry's id is '<number of its last event>-0', events numbered on over the
-- stream's life, so a reader can resume after any event and trimming to the newest N
-- events is one XTRIM MINID. One entry per batch instead of one XADD per event: Redis
-- and redis-py each spent more on the XADDs than the worker spent making the events.
-- Returns: the number of the last event added.
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local number
if #last > 0 then
  number = tonumber(string.match(last[1][1], '^(%d+)'))
else
  -- A new (or lost: Redis restarted without persistence) stream numbers on from the
  -- time in microseconds, so a reader's saved position is never ahead of new events.
  local t = redis.call('TIME')
  number = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
for i = 2, #ARGV, 2 do
  number = number + tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], string.format('%.0f-0', number), 'e', ARGV[i + 1])
end
local floor = number - tonumber(ARGV[1])
if floor > 0 then
  -- whole entries only, and '~': Redis frees whole nodes, so about N are kept
  redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', floor + 1))
end
return number
