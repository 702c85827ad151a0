-- ARGV: prefix, channel, since, limit, bus, token -> {last, first|false, barrier?, texts...}
local p, channel = ARGV[1], ARGV[2]
local key = p .. 'h:' .. channel
local texts = redis.call('ZRANGEBYSCORE', key, '(' .. ARGV[3], '+inf', 'LIMIT', 0, ARGV[4])
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local last = tonumber(redis.call('GET', p .. 'o:' .. channel) or '0')
-- The barrier (engines/redis/backend.py) whenever the caller may already have messages of the
-- channel: some of those (at or below `since`) may still be on their way to this process on
-- the bus, and must reach the replay's hold, not the caller after it.
local barrier = 0
if (#texts > 0 or tonumber(ARGV[3]) > 0) and ARGV[5] ~= '' and ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[5], 'b' .. ARGV[6])
  barrier = 1
end
local out = {last, first[2] or false, barrier}
for _, t in ipairs(texts) do out[#out + 1] = t end
return out
