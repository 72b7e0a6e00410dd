-- prune-worker-2.lua: drops a worker from the membership set if its liveness key has expired.
-- A worker that registers again between a reader's check and this script is left alone.
--
-- KEYS[1]  membership set
-- KEYS[2]  the worker's liveness key
-- ARGV[1]  worker id
--
-- Result: 1 if the id was removed, 0 if the worker is alive or was not in the set
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
return redis.call('SREM', KEYS[1], ARGV[1])
