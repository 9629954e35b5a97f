-- TokenBucket (traffik-core's token_bucket.rs). KEYS[1]: hash {t: taken, u: updated ms}.
-- uses: meter
local key = KEYS[1]
local state = redis.call('HMGET', key, 't', 'u')
local taken = tonumber(state[1]) or 0
local updated = tonumber(state[2]) or 0
local elapsed = now - updated
if elapsed < 0 then
  elapsed = 0
end
local reply, level = decide(drained(taken, elapsed))
if reply[1] == 1 and not peek and reply[6] > 0 then
  redis.call('HSET', key, 't', level, 'u', math.max(updated, now))
  redis.call('PEXPIRE', key, reply[6] + margin)
end
return reply
