-- traffik: shared by every script (concatenated in front of it): arithmetic
-- and the clock. A single decision's script continues with args.lua.
--
-- Every script takes the same ARGV and returns the same reply:
--   ARGV[1] now in ms, or '' to read the server's clock (TIME)
--   ARGV[2] count      ARGV[3] period in ms
--   ARGV[4] count / gcd(count, period)   ARGV[5] period / gcd(count, period)
--   ARGV[6] burst      ARGV[7] cost      ARGV[8] '1' to peek (write nothing)
--   ARGV[9] ms added to every key's TTL (0 on the server's clock)
--   reply {allowed 0|1, reason, limit, remaining, retry_after ms (-1: never), reset_after ms}
--   reason: 0 within the limit, 1 over the limit, 2 cost exceeds the capacity
--
-- Numbers are Lua doubles: exact integers below 2^53. traffik keeps every value
-- below that (count x period <= 2^51), and divides with `div`, which corrects
-- the rounding of a / b.

local function div(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function div_ceil(a, b)
  local q = div(a, b)
  if q * b < a then
    q = q + 1
  end
  return q
end

local function now_ms()
  if ARGV[1] == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + div(tonumber(t[2]), 1000)
  end
  return tonumber(ARGV[1])
end
