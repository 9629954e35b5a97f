-- SlidingWindowLog (traffik-core's sliding_window_log.rs).
-- KEYS[1]: list of admitted hits, oldest first, as pairs: at, cost, at, cost, ...
-- KEYS[2]: the sum of their costs.
-- keys: 2
local log = KEYS[1]
local total_key = KEYS[2]
local total = tonumber(redis.call('GET', total_key)) or 0
-- Entries that slid out of the window (at + period <= now), counted in pairs.
local expired = 0
while true do
  local at = tonumber(redis.call('LINDEX', log, 2 * expired))
  if at == nil or at + period > now then
    break
  end
  total = total - tonumber(redis.call('LINDEX', log, 2 * expired + 1))
  expired = expired + 1
end
local pairs_left = redis.call('LLEN', log) / 2 - expired
local last_at = nil
if pairs_left > 0 then
  last_at = tonumber(redis.call('LINDEX', log, -2))
end
local function reset()
  if last_at == nil then
    return 0
  end
  return last_at + period - now
end
local remaining = count - total
if remaining < 0 then
  remaining = 0
end
local reply
local append_at = nil
if cost > count then
  reply = {0, 2, count, remaining, -1, reset()}
elseif cost <= remaining then
  if cost > 0 then
    -- Never log out of order, even if the clock went back.
    append_at = now
    if last_at ~= nil and last_at > append_at then
      append_at = last_at
    end
    total = total + cost
  end
  if append_at ~= nil then
    last_at = append_at
  end
  reply = {1, 0, count, remaining - cost, 0, reset()}
else
  -- Wait until enough of the oldest entries have slid out.
  local to_free = total + cost - count
  local retry = reset()
  local entries = redis.call('LRANGE', log, 2 * expired, -1)
  for i = 1, #entries, 2 do
    local spent = tonumber(entries[i + 1])
    if spent >= to_free then
      retry = tonumber(entries[i]) + period - now
      break
    end
    to_free = to_free - spent
  end
  reply = {0, 1, count, remaining, math.max(retry, 1), reset()}
end
if peek or (expired == 0 and append_at == nil) then
  return reply
end
if expired > 0 then
  redis.call('LTRIM', log, 2 * expired, -1)
end
if append_at ~= nil then
  if pairs_left > 0 and tonumber(redis.call('LINDEX', log, -2)) == append_at then
    redis.call('LSET', log, -1, tonumber(redis.call('LINDEX', log, -1)) + cost)
  else
    redis.call('RPUSH', log, append_at, cost)
  end
end
local ttl = reset()
if ttl > 0 then
  redis.call('SET', total_key, total, 'PX', ttl + margin)
  redis.call('PEXPIRE', log, ttl + margin)
else
  redis.call('DEL', log, total_key)
end
return reply
