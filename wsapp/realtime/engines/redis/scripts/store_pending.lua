-- Expire the user's due personal messages; with want=1 return the rest, oldest first, as
-- flat {msg, offset, created, data}... (and publish a barrier when there are some).
-- ARGV: prefix, user, now_ms, want, bus, token
local p, user, now, want = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local due = p .. 'due:' .. user
local out = {}
for _, msg in ipairs(redis.call('ZRANGE', due, 0, -1)) do
  local rec = p .. 'r:' .. msg
  local v = redis.call('HMGET', rec, 'status', 'expires', 'offset', 'created', 'data')
  local st, exp = v[1], tonumber(v[2])
  if st ~= 'pending' and st ~= 'delivered' then
    redis.call('ZREM', due, msg)
  elseif exp and exp < now then
    redis.call('HSET', rec, 'status', 'expired')
    redis.call('ZREM', due, msg)
  elseif want then
    out[#out + 1] = msg; out[#out + 1] = v[3]; out[#out + 1] = v[4]; out[#out + 1] = v[5]
  end
end
if #out > 0 and ARGV[5] ~= '' and ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[5], 'b' .. ARGV[6])
end
return out
