-- set-assignment-2.lua: replaces a job's shard assignment if the new generation is larger than
-- the stored one.
--
-- KEYS[1]  job record (hash)
-- KEYS[2]  job assignment (hash: 'generation', and per shard 'w:<shard>' worker id and
--          'u:<shard>' JSON of its unit ranges)
-- ARGV[1]  new generation
-- ARGV[2..] hash field, value pairs of the shards
--
-- Result: {0}                       Ok
--         {-6, stored generation}   StaleGeneration
--         {-1}                      JobNotFound
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local current = redis.call('HGET', KEYS[2], 'generation')
if current and tonumber(ARGV[1]) <= tonumber(current) then
  return {-6, tonumber(current)}
end
redis.call('DEL', KEYS[2])
local fields = {'generation', ARGV[1]}
for i = 2, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[2], unpack(fields))
return {0}
