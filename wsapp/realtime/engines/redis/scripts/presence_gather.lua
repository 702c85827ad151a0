-- ARGV: prefix, pid, lease_ms, name, this process's share (JSON). Stores the share of figure
-- set `name`; if this process reports it (first to claim, or still holding, the lead key),
-- returns every share younger than lease_ms (older ones are dropped: their process is gone).
-- Else false: the process holding the lead reports.
local p, pid, ttl, name = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
local key = p .. 'stats:' .. name
redis.call('HSET', key, pid, now .. ' ' .. ARGV[5])
redis.call('PEXPIRE', key, ttl * 10)
local lead = key .. ':lead'
local holder = redis.call('GET', lead)
if holder and holder ~= pid then return false end
redis.call('SET', lead, pid, 'PX', ttl)
local shares = {}
local flat = redis.call('HGETALL', key)
for k = 1, #flat, 2 do
  local at = tonumber(string.match(flat[k + 1], '^%d+'))
  if now - at > ttl then redis.call('HDEL', key, flat[k])
  else table.insert(shares, flat[k + 1]) end
end
return shares
