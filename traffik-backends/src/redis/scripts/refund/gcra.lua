-- GCRA's refund (traffik-core's gcra.rs). KEYS[1]: hash {t: arrival ms, f: fraction in 1/drain ms}.
-- uses: meter
-- The key keeps its TTL.
local key = KEYS[1]
local state = redis.call('HMGET', key, 't', 'f')
if state[1] == false then
  return 0
end
local tat = tonumber(state[1]) or 0
local frac = tonumber(state[2]) or 0
local ahead = 0
if tat > now or (tat == now and frac > 0) then
  ahead = (tat - now) * drain + frac
end
ahead = refunded(ahead)
local whole = div(ahead, drain)
redis.call('HSET', key, 't', now + whole, 'f', ahead - whole * drain)
return 1
