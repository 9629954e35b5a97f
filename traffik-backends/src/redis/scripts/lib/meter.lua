-- The meter shared by the three bucket strategies (traffik-core's meter.rs):
-- fills by `unit` per hit, drains by `drain` per ms, holds burst x unit.

local function drained(level, elapsed)
  if elapsed >= div_ceil(level, drain) then
    return 0
  end
  return level - elapsed * drain
end

-- Returns the reply and the level after the hit.
local function decide(level)
  local capacity = burst * unit
  if level > capacity then
    level = capacity
  end
  if cost <= burst and level + cost * unit <= capacity then
    level = level + cost * unit
    return {1, 0, burst, div(capacity - level, unit), 0, div_ceil(level, drain)}, level
  end
  local remaining = div(capacity - level, unit)
  local reset = div_ceil(level, drain)
  if cost > burst then
    return {0, 2, burst, remaining, -1, reset}, level
  end
  local retry = div_ceil(level + cost * unit - capacity, drain)
  if retry < 1 then
    retry = 1
  end
  return {0, 1, burst, remaining, retry, reset}, level
end

-- The level after giving back `cost` hits (never below empty).
local function refunded(level)
  local capacity = burst * unit
  if level > capacity then
    level = capacity
  end
  level = level - cost * unit
  if level < 0 then
    level = 0
  end
  return level
end
