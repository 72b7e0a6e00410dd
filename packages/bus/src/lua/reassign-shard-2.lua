-- reassign-shard-2.lua: moves one shard from one worker to another if the first still holds it,
-- and raises the assignment's generation by one.
--
-- KEYS[1]  job record (hash)
-- KEYS[2]  job assignment (hash, see set-assignment-2.lua)
-- ARGV[1]  hash field of the shard's worker ('w:<shard>')
-- ARGV[2]  worker id that must hold the shard now
-- ARGV[3]  worker id that gets it
--
-- Result: {0, new generation}   Ok
--         {-8, holder}          ShardNotHeld: another worker holds the shard
--         {-7}                  ShardNotFound: the assignment has no such shard
--         {-9}                  NoAssignment
--         {-1}                  JobNotFound
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {-9}
end
local holder = redis.call('HGET', KEYS[2], ARGV[1])
if not holder then
  return {-7}
end
if holder ~= ARGV[2] then
  return {-8, holder}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return {0, redis.call('HINCRBY', KEYS[2], 'generation', 1)}
