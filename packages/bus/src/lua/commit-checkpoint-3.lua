-- commit-checkpoint-3.lua: makes a fully written checkpoint the current one of its shard, unless
-- the current one is of a later step or its writer's run was replaced. The chunks are written
-- before this runs and never change, so a reader that follows the pointer sees either the old or
-- the new checkpoint whole. The caller deletes the previous version's chunks after this returns
-- (or the new version's, on a refusal).
--
-- KEYS[1]  job record (hash)
-- KEYS[2]  the job's checkpoint pointers (hash: 's:<shard>' step, 'p:<shard>' pointer JSON
--          {version, step, chunks, bytes, at, gen})
-- KEYS[3]  job assignment (hash, see set-assignment-2.lua)
-- ARGV[1]  shard id
-- ARGV[2]  step
-- ARGV[3]  pointer JSON of the new checkpoint
-- ARGV[4]  the writer's assignment generation (0: none given, not checked)
--
-- Result: {0, previous pointer JSON or ''}   Ok
--         {-5, stored step}                  StaleStep: a later checkpoint is current
--         {-6, assignment generation}        StaleGeneration: the writer's generation is older
--         {-1}                               JobNotFound
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local writer = tonumber(ARGV[4])
if writer > 0 then
  local assigned = redis.call('HGET', KEYS[3], 'generation')
  if assigned and writer < tonumber(assigned) then
    return {-6, tonumber(assigned)}
  end
end
local stepField = 's:' .. ARGV[1]
local pointerField = 'p:' .. ARGV[1]
local current = redis.call('HGET', KEYS[2], stepField)
if current and tonumber(ARGV[2]) < tonumber(current) then
  return {-5, tonumber(current)}
end
local previous = redis.call('HGET', KEYS[2], pointerField)
redis.call('HSET', KEYS[2], stepField, ARGV[2], pointerField, ARGV[3])
return {0, previous or ''}
