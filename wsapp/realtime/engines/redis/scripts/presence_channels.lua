-- ARGV: prefix -> how many channels have a connection on any live process
local p = ARGV[1]
local sets = {}
for _, q in ipairs(redis.call('ZRANGEBYSCORE', p .. 'procs', now_ms(), '+inf')) do
  table.insert(sets, p .. 'pch:' .. q)
end
if #sets == 0 then return 0 end
return #redis.call('SUNION', unpack(sets))
