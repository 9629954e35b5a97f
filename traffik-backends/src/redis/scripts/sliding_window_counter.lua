-- SlidingWindowCounter (traffik-core's sliding_window_counter.rs).
-- KEYS[1]: hash {e: current window end, p: previous count, c: current count}.
local key = KEYS[1]
local state = redis.call('HMGET', key, 'e', 'p', 'c')
local window_end = tonumber(state[1]) or 0
local previous = tonumber(state[2]) or 0
local current = tonumber(state[3]) or 0
if window_end <= now then
  local new_end = now - (now - div(now, period) * period) + period
  if window_end + period == new_end then
    previous = current
  else
    previous = 0
  end
  current = 0
  window_end = new_end
end
local elapsed = now + period - window_end
if elapsed < 0 then
  elapsed = 0
elseif elapsed > period - 1 then
  elapsed = period - 1
end
local carried = div_ceil(previous * (period - elapsed), period)
local remaining = count - (current + carried)
if remaining < 0 then
  remaining = 0
end
local function reset()
  if current > 0 then
    return window_end + period - now
  elseif previous > 0 then
    return window_end - now
  end
  return 0
end
if cost > count then
  return {0, 2, count, remaining, -1, reset()}
end
if cost <= remaining then
  current = current + cost
  local ttl = reset()
  if not peek and ttl > 0 then
    redis.call('HSET', key, 'e', window_end, 'p', previous, 'c', current)
    redis.call('PEXPIRE', key, ttl + margin)
  end
  return {1, 0, count, remaining - cost, 0, ttl}
end
-- The shortest wait: later in this window, early in the next, or after it.
local to_end = period - elapsed
local retry = nil
local room = count - (current + cost)
if room >= 0 and previous > 0 then
  local wait = to_end - div(room * period, previous)
  if wait < 1 then
    wait = 1
  end
  if wait < to_end then
    retry = wait
  end
end
if retry == nil then
  if current == 0 then
    retry = to_end
  else
    local into_next = period - div((count - cost) * period, current)
    if into_next < 0 then
      into_next = 0
    end
    if into_next < period then
      retry = to_end + into_next
    else
      retry = to_end + period
    end
  end
end
return {0, 1, count, remaining, math.max(retry, 1), reset()}
