-- transition-job-2.lua: compare-and-set of a job's state. Moves the job to the target state if
-- its current state is one of the allowed ones, applies a shallow patch of its fields, and
-- appends a state event {type, at, from, to} to the job's stream, all at once. Terminal states
-- (completed, failed, cancelled) are final whatever the caller allows.
--
-- KEYS[1]  job record (hash)
-- KEYS[2]  job event stream
-- ARGV[1]  target state
-- ARGV[2]  now, ms since the epoch
-- ARGV[3]  event stream max length (0: no trimming)
-- ARGV[4]  n: how many allowed source states follow
-- ARGV[5 .. 4+n]  the allowed source states
-- ARGV[5+n]       m: how many hash field, JSON value pairs follow (fields to set)
-- ARGV[6+n .. 5+n+2m]  the pairs
-- ARGV[6+n+2m ..]      hash fields to delete
--
-- Result: {0, record as HGETALL pairs}   Ok: moved
--         {-3, record}                   StateConflict: the state is not one of the allowed
--         {-4, record}                   TerminalState: the job is in a final state
--         {-1}                           JobNotFound
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {-1}
end
if state == 'completed' or state == 'failed' or state == 'cancelled' then
  return {-4, redis.call('HGETALL', KEYS[1])}
end
local n = tonumber(ARGV[4])
local allowed = false
for i = 5, 4 + n do
  if ARGV[i] == state then
    allowed = true
  end
end
if not allowed then
  return {-3, redis.call('HGETALL', KEYS[1])}
end
local m = tonumber(ARGV[5 + n])
local set = {'state', ARGV[1], 'updatedAt', ARGV[2]}
for i = 6 + n, 5 + n + 2 * m do
  set[#set + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(set))
if #ARGV >= 6 + n + 2 * m then
  redis.call('HDEL', KEYS[1], unpack(ARGV, 6 + n + 2 * m))
end
local event = '{"type":"state","at":' .. ARGV[2] .. ',"from":"' .. state .. '","to":"' .. ARGV[1] .. '"}'
local maxlen = tonumber(ARGV[3])
if maxlen > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', maxlen, '*', 'e', event)
else
  redis.call('XADD', KEYS[2], '*', 'e', event)
end
return {0, redis.call('HGETALL', KEYS[1])}
