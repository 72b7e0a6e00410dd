-- create-job-4.lua: creates a job in state 'queued' unless its id is taken, indexes it by
-- creation order and appends its first state event, all at once.
--
-- KEYS[1]  job record (hash)
-- KEYS[2]  jobs index (zset: job id scored by creation sequence)
-- KEYS[3]  creation sequence counter (string)
-- KEYS[4]  job event stream
-- ARGV[1]  job id
-- ARGV[2]  now, ms since the epoch
-- ARGV[3]  event stream max length (0: no trimming)
-- ARGV[4]  JSON of the state event
-- ARGV[5..] hash field, JSON value pairs of the caller's fields (fields named 'f:<name>')
--
-- Result: {0, record as HGETALL pairs}   Ok
--         {-2}                           JobExists
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {-2}
end
local seq = redis.call('INCR', KEYS[3])
local fields = {'id', ARGV[1], 'state', 'queued', 'seq', seq, 'createdAt', ARGV[2], 'updatedAt', ARGV[2]}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], seq, ARGV[1])
local maxlen = tonumber(ARGV[3])
if maxlen > 0 then
  redis.call('XADD', KEYS[4], 'MAXLEN', maxlen, '*', 'e', ARGV[4])
else
  redis.call('XADD', KEYS[4], '*', 'e', ARGV[4])
end
return {0, redis.call('HGETALL', KEYS[1])}
