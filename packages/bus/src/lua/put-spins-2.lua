-- put-spins-2.lua: stores a shard's spin snapshot unless a later step is already stored.
--
-- KEYS[1]  job record (hash)
-- KEYS[2]  the shard's spin snapshot (hash: 'step', 'data')
-- ARGV[1]  step
-- ARGV[2]  bit-packed spins (bytes)
--
-- Result: {0}                  Ok
--         {-5, stored step}    StaleStep
--         {-1}                 JobNotFound
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local current = redis.call('HGET', KEYS[2], 'step')
if current and tonumber(ARGV[1]) < tonumber(current) then
  return {-5, tonumber(current)}
end
redis.call('HSET', KEYS[2], 'step', ARGV[1], 'data', ARGV[2])
return {0}
