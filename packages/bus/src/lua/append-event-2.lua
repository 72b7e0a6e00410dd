-- append-event-2.lua: appends an event to the stream of an existing job.
--
-- KEYS[1]  job record (hash)
-- KEYS[2]  job event stream
-- ARGV[1]  JSON of the event
-- ARGV[2]  stream max length (0: no trimming)
--
-- Result: {0, stream id}   Ok
--         {-1}             JobNotFound
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local maxlen = tonumber(ARGV[2])
local id
if maxlen > 0 then
  id = redis.call('XADD', KEYS[2], 'MAXLEN', maxlen, '*', 'e', ARGV[1])
else
  id = redis.call('XADD', KEYS[2], '*', 'e', ARGV[1])
end
return {0, id}
