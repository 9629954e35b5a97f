-- GCRA (traffik-core's gcra.rs). KEYS[1]: hash {t: arrival ms, f: fraction in 1/drain ms}.
-- uses: meter
local key = KEYS[1]
local state = redis.call('HMGET', key, 't', 'f')
local tat = tonumber(state[1]) or 0
local frac = tonumber(state[2]) or 0
local ahead = 0
if tat > now or (tat == now and frac > 0) then
  ahead = (tat - now) * drain + frac
end
local reply, after = decide(ahead)
if reply[1] == 1 and not peek and reply[6] > 0 then
  local whole = div(after, drain)
  redis.call('HSET', key, 't', now + whole, 'f', after - whole * drain)
  redis.call('PEXPIRE', key, reply[6] + margin)
end
return reply
