-- FixedWindow's refund (traffik-core's fixed_window.rs). KEYS[1]: hash {e: window end, c: count}.
-- ARGV[8]: how many ms ago the hit was charged. The key keeps its TTL.
local key = KEYS[1]
local state = redis.call('HMGET', key, 'e', 'c')
local window_end = tonumber(state[1])
if window_end == nil then
  return 0
end
local charged = now - tonumber(ARGV[8])
local window = charged - (charged - div(charged, period) * period) + period
if window_end ~= window or window_end <= now then
  return 0
end
local used = (tonumber(state[2]) or 0) - cost
if used < 0 then
  used = 0
end
redis.call('HSET', key, 'c', used)
return 1
