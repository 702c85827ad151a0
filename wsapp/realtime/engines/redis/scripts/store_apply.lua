-- ARGV: prefix, now_ms, history_size, history_ttl_ms, bus ('' = do not publish), retention_ms,
-- key_ttl_ms, then jobs, each a kind letter and its fields:
--   P channel head tail ikey msg hsize httl   -> offset  (hsize, httl_ms: the channel's own
--                                               history limits; '' = the defaults)
--   U user msg ts data category expires head tail ikey nquotas [key limit window_ms reason]...
--                                            -> {status, reason|false, offset|false}
--   D ts n msg...                             -> 0
-- The envelope of a message is head .. offset .. tail (built by message_raw in Python).
-- ikey is the job's scoped idempotency key ('' = none): when it is already kept, the job
-- writes nothing and answers {'K', kept} (JSON [msg, result] of the first run); else the
-- result is kept under it for key_ttl_ms, in this same script (engines/base.py).
local p, now = ARGV[1], tonumber(ARGV[2])
local hsize, httl = tonumber(ARGV[3]), tonumber(ARGV[4])
local bus, keep, kttl = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local results, touched = {}, {}

local function known(ikey)
  if ikey == '' then return false end
  local kept = redis.call('GET', p .. 'k:' .. ikey)
  if kept then results[#results + 1] = {'K', kept} end
  return kept
end

local function remember(ikey, value)
  if ikey ~= '' then
    redis.call('SET', p .. 'k:' .. ikey, cjson.encode(value), 'PX', kttl)
  end
end

local function append(channel, head, tail, hs, ht)
  local off = redis.call('INCR', p .. 'o:' .. channel)
  local text = head .. off .. tail
  redis.call('ZADD', p .. 'h:' .. channel, off, text)
  if bus ~= '' then redis.call('PUBLISH', bus, 'm' .. #channel .. ':' .. channel .. text) end
  touched[channel] = {off, tonumber(hs) or hsize, tonumber(ht) or httl}
  return off
end

-- The push job whose fields start at ARGV[i + 1]: check its quotas, keep its record, append
-- it to user:<id> unless suppressed; its result is appended to results.
local function push(i)
  local user, msg, ts, data = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
  local ts_s = ARGV[i + 3]
  local cat, exp, head, tail = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local ikey, nq = ARGV[i + 9], tonumber(ARGV[i + 10])
  local reason = false
  for q = 0, nq - 1 do
    local at = i + 11 + 4 * q
    local key, limit, window = ARGV[at], tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
    if not reason and redis.call('ZCOUNT', p .. key, ts - window, '+inf') >= limit then
      reason = ARGV[at + 3]
    end
  end
  local rec = p .. 'r:' .. msg
  local fields = {'user', user, 'data', data, 'created', ts, 'attempts', 0}
  if cat ~= '' then fields[#fields + 1] = 'category'; fields[#fields + 1] = cat end
  if exp ~= '' then fields[#fields + 1] = 'expires'; fields[#fields + 1] = exp end
  -- Scores are built as strings: Lua would print a 16-digit number in exponent form.
  local seq = redis.call('INCR', p .. 'seq') % 1000
  local index = p .. 'ur:' .. user
  redis.call('ZADD', index, ts_s .. string.format('%03d', seq), msg)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', string.format('%d000', now - keep))
  redis.call('PEXPIRE', index, keep)
  local until_ms = math.max(tonumber(exp) or ts, ts) - now + keep
  if reason then
    fields[#fields + 1] = 'status'; fields[#fields + 1] = 'suppressed'
    fields[#fields + 1] = 'reason'; fields[#fields + 1] = reason
    redis.call('HSET', rec, unpack(fields))
    redis.call('PEXPIRE', rec, math.max(until_ms, 1000))
    results[#results + 1] = {'suppressed', reason, false}
    remember(ikey, {msg, {'suppressed', reason, cjson.null}})
    return
  end
  local off = append('user:' .. user, head, tail)
  fields[#fields + 1] = 'status'; fields[#fields + 1] = 'pending'
  fields[#fields + 1] = 'offset'; fields[#fields + 1] = off
  redis.call('HSET', rec, unpack(fields))
  redis.call('PEXPIRE', rec, math.max(until_ms, 1000))
  redis.call('ZADD', p .. 'due:' .. user, off, msg)
  redis.call('PEXPIRE', p .. 'due:' .. user, keep)
  local counted = {p .. 'qt:' .. user}
  if cat ~= '' then counted[2] = p .. 'qc:' .. user .. ':' .. cat end
  for _, key in ipairs(counted) do
    redis.call('ZADD', key, ts, msg)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - keep)
    redis.call('PEXPIRE', key, keep)
  end
  results[#results + 1] = {'pending', false, off}
  remember(ikey, {msg, {'pending', cjson.null, off}})
end

local i = 8
while i <= #ARGV do
  local kind = ARGV[i]
  if kind == 'P' then
    local ikey = ARGV[i + 4]
    if not known(ikey) then
      local off = append(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 6], ARGV[i + 7])
      results[#results + 1] = off
      remember(ikey, {ARGV[i + 5], off})
    end
    i = i + 8
  elseif kind == 'U' then
    local nq = tonumber(ARGV[i + 10])
    if not known(ARGV[i + 9]) then push(i) end
    i = i + 11 + 4 * nq
  elseif kind == 'D' then
    local ts, n = ARGV[i + 1], tonumber(ARGV[i + 2])
    for k = 1, n do
      local rec = p .. 'r:' .. ARGV[i + 2 + k]
      local st = redis.call('HGET', rec, 'status')
      if st == 'pending' or st == 'delivered' then
        redis.call('HSET', rec, 'status', 'delivered')
        redis.call('HSETNX', rec, 'delivered', ts)
        redis.call('HINCRBY', rec, 'attempts', 1)
      end
    end
    results[#results + 1] = 0
    i = i + 3 + n
  else
    return redis.error_reply('unknown store job ' .. tostring(kind))
  end
end

for channel, t in pairs(touched) do
  local key, last, size, ttl = p .. 'h:' .. channel, t[1], t[2], t[3]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', last - size)
  for _ = 1, 100 do  -- drop what outlived its ttl, oldest first (bounded per call)
    local oldest = redis.call('ZRANGE', key, 0, 0)
    if #oldest == 0 then break end
    local ts = tonumber(string.match(oldest[1], '"ts":(%-?%d+)}$'))
    if ts == nil or ts >= now - ttl then break end
    redis.call('ZREMRANGEBYRANK', key, 0, 0)
  end
  redis.call('PEXPIRE', key, ttl)
end
return results
