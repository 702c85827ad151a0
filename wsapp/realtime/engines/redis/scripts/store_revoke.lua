-- ARGV: prefix, user, before_ms -> keeps the later of the stored and the given time
local key = ARGV[1] .. 'rv:' .. ARGV[2]
local now = tonumber(redis.call('GET', key) or '0')
if tonumber(ARGV[3]) > now then redis.call('SET', key, ARGV[3]) end
return 1
