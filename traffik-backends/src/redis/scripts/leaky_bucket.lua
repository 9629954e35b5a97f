-- LeakyBucket (traffik-core's leaky_bucket.rs). KEYS[1]: hash {l: level, u: leaked ms}.
-- uses: meter
local key = KEYS[1]
local state = redis.call('HMGET', key, 'l', 'u')
local level = tonumber(state[1]) or 0
local leaked = tonumber(state[2]) or 0
local elapsed = now - leaked
if elapsed < 0 then
  elapsed = 0
end
local reply, after = decide(drained(level, elapsed))
if reply[1] == 1 and not peek and reply[6] > 0 then
  redis.call('HSET', key, 'l', after, 'u', math.max(leaked, now))
  redis.call('PEXPIRE', key, reply[6] + margin)
end
return reply
