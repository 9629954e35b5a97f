-- LeakyBucket's refund (traffik-core's leaky_bucket.rs). KEYS[1]: hash {l: level, u: leaked ms}.
-- uses: meter
-- The key keeps its TTL.
local key = KEYS[1]
local state = redis.call('HMGET', key, 'l', 'u')
if state[1] == false then
  return 0
end
local level = tonumber(state[1]) or 0
local leaked = tonumber(state[2]) or 0
local elapsed = now - leaked
if elapsed < 0 then
  elapsed = 0
end
redis.call('HSET', key, 'l', refunded(drained(level, elapsed)), 'u', math.max(leaked, now))
return 1
