-- SlidingWindowLog's refund (traffik-core's sliding_window_log.rs).
-- KEYS[1]: list of admitted hits, oldest first, as pairs: at, cost, ...
-- KEYS[2]: the sum of their costs. ARGV[8]: how many ms ago the hit was charged.
-- The cost comes off the oldest entries not older than the charge; the keys keep their TTL.
-- keys: 2
local log = KEYS[1]
local total_key = KEYS[2]
local charged = now - tonumber(ARGV[8])
local entries = redis.call('LRANGE', log, 0, -1)
local left = cost
local back = 0
local kept = {}
for i = 1, #entries, 2 do
  local at = tonumber(entries[i])
  local spent = tonumber(entries[i + 1])
  if left > 0 and at >= charged then
    local take = math.min(spent, left)
    spent = spent - take
    left = left - take
    back = back + take
  end
  if spent > 0 then
    kept[#kept + 1] = at
    kept[#kept + 1] = spent
  end
end
if back == 0 then
  return 0
end
local ttl = redis.call('PTTL', log)
redis.call('DEL', log)
if #kept > 0 then
  redis.call('RPUSH', log, unpack(kept))
  if ttl > 0 then
    redis.call('PEXPIRE', log, ttl)
  end
end
local total = (tonumber(redis.call('GET', total_key)) or 0) - back
if total < 0 then
  total = 0
end
redis.call('SET', total_key, total, 'KEEPTTL')
return 1
