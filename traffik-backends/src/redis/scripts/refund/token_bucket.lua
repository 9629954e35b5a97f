-- TokenBucket's refund (traffik-core's token_bucket.rs). KEYS[1]: hash {t: taken, u: updated ms}.
-- uses: meter
-- The key keeps its TTL.
local key = KEYS[1]
local state = redis.call('HMGET', key, 't', 'u')
if state[1] == false then
  return 0
end
local taken = tonumber(state[1]) or 0
local updated = tonumber(state[2]) or 0
local elapsed = now - updated
if elapsed < 0 then
  elapsed = 0
end
redis.call('HSET', key, 't', refunded(drained(taken, elapsed)), 'u', math.max(updated, now))
return 1
