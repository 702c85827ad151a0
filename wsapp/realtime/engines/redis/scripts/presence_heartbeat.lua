-- ARGV: prefix, bus, pid, ttl_ms, connections -> 1 if this process was still registered
local p, bus, pid, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local known = redis.call('ZSCORE', p .. 'procs', pid)
redis.call('ZADD', p .. 'procs', now + ttl, pid)
redis.call('HSET', p .. 'conns', pid, ARGV[5])
local dead = redis.call('ZRANGEBYSCORE', p .. 'procs', '-inf', '(' .. now, 'LIMIT', 0, 10)
for _, other in ipairs(dead) do
  if other ~= pid then reap(p, bus, other) end
end
if known then return 1 end
return 0
