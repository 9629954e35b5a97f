-- SlidingWindowCounter's refund (traffik-core's sliding_window_counter.rs).
-- KEYS[1]: hash {e: current window end, p: previous count, c: current count}.
-- ARGV[8]: how many ms ago the hit was charged. The key keeps its TTL.
local key = KEYS[1]
local state = redis.call('HMGET', key, 'e', 'p', 'c')
local window_end = tonumber(state[1])
if window_end == nil then
  return 0
end
local charged = now - tonumber(ARGV[8])
local window = charged - (charged - div(charged, period) * period) + period
local field = nil
local value = 0
if window_end == window then
  field = 'c'
  value = tonumber(state[3]) or 0
elseif window_end == window + period then
  field = 'p'
  value = tonumber(state[2]) or 0
else
  return 0
end
value = value - cost
if value < 0 then
  value = 0
end
redis.call('HSET', key, field, value)
return 1
