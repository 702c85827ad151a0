-- ARGV: prefix, user, status ('' = any), limit -> flat records, newest first (11 fields each)
local p, user, want, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local index = p .. 'ur:' .. user
local out, found, start = {}, 0, 0
while found < limit do
  local ids = redis.call('ZREVRANGE', index, start, start + 199)
  if #ids == 0 then break end
  start = start + 200
  for _, msg in ipairs(ids) do
    local v = redis.call('HMGET', p .. 'r:' .. msg, 'status', 'reason', 'category', 'offset',
      'created', 'delivered', 'acked', 'expires', 'attempts', 'data')
    if not v[1] then
      redis.call('ZREM', index, msg)
    elseif want == '' or v[1] == want then
      out[#out + 1] = msg
      for k = 1, 10 do out[#out + 1] = v[k] end
      found = found + 1
      if found >= limit then break end
    end
  end
end
return out
