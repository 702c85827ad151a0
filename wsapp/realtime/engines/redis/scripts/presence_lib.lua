-- Shared by the scripts below: apply a delta `d` of user `u`'s connections in channel `c` on
-- process `pid`, publishing join (skip = the client that joined) / leave on a 0 <-> n change.
local function user_delta(p, bus, pid, c, u, d, skip)
  local pc = p .. 'pc:' .. pid .. ':' .. c
  if redis.call('HINCRBY', pc, u, d) <= 0 then redis.call('HDEL', pc, u) end
  local pu = p .. 'pu:' .. c
  local g = redis.call('HINCRBY', pu, u, d)
  if d > 0 and g == d then
    redis.call('PUBLISH', bus, 'j' .. cjson.encode({c, u, skip}))
  elseif g <= 0 then
    redis.call('HDEL', pu, u)
    if d < 0 and g - d > 0 then
      redis.call('PUBLISH', bus, 'l' .. cjson.encode({c, u}))
    end
  end
  if c == 'user:' .. u then
    if redis.call('HINCRBY', p .. 'online', u, d) <= 0 then
      redis.call('HDEL', p .. 'online', u)
    end
  end
end
local function conn_delta(p, pid, c, d)
  local pn = p .. 'pn:' .. c
  if redis.call('HINCRBY', pn, pid, d) <= 0 then
    redis.call('HDEL', pn, pid)
    redis.call('SREM', p .. 'pch:' .. pid, c)
  end
end
local function reap(p, bus, pid)
  for _, c in ipairs(redis.call('SMEMBERS', p .. 'pch:' .. pid)) do
    redis.call('HDEL', p .. 'pn:' .. c, pid)
    local pc = p .. 'pc:' .. pid .. ':' .. c
    local flat = redis.call('HGETALL', pc)
    for k = 1, #flat, 2 do
      local n = tonumber(flat[k + 1])
      if n > 0 then user_delta(p, bus, pid, c, flat[k], -n, '') end
    end
    redis.call('DEL', pc)
  end
  redis.call('DEL', p .. 'pch:' .. pid)
  redis.call('ZREM', p .. 'procs', pid)
  redis.call('HDEL', p .. 'conns', pid)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
