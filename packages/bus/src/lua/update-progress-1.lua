-- update-progress-1.lua: sets a job's progress field unless the job is in a final state.
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  hash field of the progress ('f:progress')
-- ARGV[2]  JSON of the progress
-- ARGV[3]  now, ms since the epoch
--
-- Result: 0   Ok
--         -4  TerminalState: the job has ended, its progress is frozen
--         -1  JobNotFound
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return -1
end
if state == 'completed' or state == 'failed' or state == 'cancelled' then
  return -4
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'updatedAt', ARGV[3])
return 0
