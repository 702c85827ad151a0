-- ARGV: prefix, bus, pid, ttl_ms, connections, then per channel: name, conns, nusers,
-- (user, count) * nusers. Makes this process's share exactly that.
local p, bus, pid, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
redis.call('ZADD', p .. 'procs', now_ms() + ttl, pid)
redis.call('HSET', p .. 'conns', pid, ARGV[5])
local chans = p .. 'pch:' .. pid
local wanted = {}
local i = 6
while i <= #ARGV do
  local c, conns, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local users = {}
  for k = 1, n do users[ARGV[i + 1 + 2 * k]] = tonumber(ARGV[i + 2 + 2 * k]) end
  wanted[c] = {conns, users}
  i = i + 3 + 2 * n
end
for _, c in ipairs(redis.call('SMEMBERS', chans)) do
  if not wanted[c] then wanted[c] = {0, {}} end
end
for c, want in pairs(wanted) do
  local pn = p .. 'pn:' .. c
  if want[1] > 0 then redis.call('HSET', pn, pid, want[1]) else redis.call('HDEL', pn, pid) end
  local pc = p .. 'pc:' .. pid .. ':' .. c
  local flat = redis.call('HGETALL', pc)
  local have = {}
  for k = 1, #flat, 2 do have[flat[k]] = tonumber(flat[k + 1]) end
  for u, n in pairs(want[2]) do
    local d = n - (have[u] or 0)
    if d ~= 0 then user_delta(p, bus, pid, c, u, d, '') end
    have[u] = nil
  end
  for u, n in pairs(have) do
    if n ~= 0 then user_delta(p, bus, pid, c, u, -n, '') end
  end
  if want[1] > 0 then redis.call('SADD', chans, c) else redis.call('SREM', chans, c) end
end
return 1
