-- ARGV: prefix, bus, pid, ttl_ms, then groups of (channel, user|'', skip client|'', delta)
local p, bus, pid = ARGV[1], ARGV[2], ARGV[3]
local chans = p .. 'pch:' .. pid
-- registered from the first delta on, so a crash before the first beat is reaped too
redis.call('ZADD', p .. 'procs', 'NX', now_ms() + tonumber(ARGV[4]), pid)
for i = 5, #ARGV, 4 do
  local c, u, skip, d = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  redis.call('SADD', chans, c)
  conn_delta(p, pid, c, d)
  if u ~= '' then user_delta(p, bus, pid, c, u, d, skip) end
end
return 1
