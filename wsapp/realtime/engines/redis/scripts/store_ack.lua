-- ARGV: prefix, user, msg, now_ms -> status after, or false when not the user's message
local p, user, msg, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local rec = p .. 'r:' .. msg
local v = redis.call('HMGET', rec, 'user', 'status', 'expires')
if v[1] ~= user then return false end
local st, exp = v[2], tonumber(v[3])
if st == 'pending' or st == 'delivered' then
  redis.call('ZREM', p .. 'due:' .. user, msg)
  if exp and exp < now then
    redis.call('HSET', rec, 'status', 'expired')
    return 'expired'
  end
  -- an ack proves delivery: fill it in if the queued "delivered" update has not landed yet
  redis.call('HSET', rec, 'status', 'acked', 'acked', now)
  redis.call('HSETNX', rec, 'delivered', now)
  if tonumber(redis.call('HGET', rec, 'attempts') or '0') < 1 then
    redis.call('HSET', rec, 'attempts', 1)
  end
  return 'acked'
end
return st
