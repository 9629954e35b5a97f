-- FixedWindow (traffik-core's fixed_window.rs). KEYS[1]: hash {e: window end, c: count}.
local key = KEYS[1]
local state = redis.call('HMGET', key, 'e', 'c')
local window_end = tonumber(state[1]) or 0
local used = tonumber(state[2]) or 0
if window_end <= now then
  window_end = now - (now - div(now, period) * period) + period
  used = 0
end
local until_end = window_end - now
local function reset(c)
  if c == 0 then
    return 0
  end
  return until_end
end
local remaining = count - used
if remaining < 0 then
  remaining = 0
end
if cost > count then
  return {0, 2, count, remaining, -1, reset(used)}
end
if cost <= remaining then
  used = used + cost
  local ttl = reset(used)
  if not peek and ttl > 0 then
    redis.call('HSET', key, 'e', window_end, 'c', used)
    redis.call('PEXPIRE', key, ttl + margin)
  end
  return {1, 0, count, remaining - cost, 0, ttl}
end
return {0, 1, count, remaining, math.max(until_end, 1), until_end}
