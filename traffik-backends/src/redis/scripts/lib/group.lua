-- The group script (traffik's ThrottleGroup): every limit of one request,
-- all or nothing, in one call. It follows prelude.lua and one function per
-- strategy script, `strategies[i](KEYS, count, period, drain, unit, burst,
-- cost, peek, margin)`, each taking `key_counts[i]` keys.
--
--   ARGV[1] now in ms, or '' to read the server's clock (TIME)
--   ARGV[2] ms added to every key's TTL      ARGV[3] n, the number of limits
--   then for each limit, seven values: its strategy's position in
--   `strategies`, count, period, count / gcd, period / gcd, burst, cost
--   KEYS: each limit's keys, in order
--   reply: the n strategy replies (six numbers each), one after the other
--
-- Every limit is first decided without writing. When all admit, each is
-- decided again, writing: nothing ran in between, so each decides as it was
-- observed. When one denies, nothing is written, and those that would have
-- admitted report their quota as it stands (a peek of cost 0).
local margin = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local calls = {}
local next_key = 1
for i = 1, n do
  local base = 3 + (i - 1) * 7
  local which = tonumber(ARGV[base + 1])
  local keys = {}
  for k = 1, key_counts[which] do
    keys[k] = KEYS[next_key]
    next_key = next_key + 1
  end
  calls[i] = {
    which, keys, tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4]),
    tonumber(ARGV[base + 5]), tonumber(ARGV[base + 6]), tonumber(ARGV[base + 7])
  }
end
local function run(call, peek, cost)
  return strategies[call[1]](call[2], call[3], call[4], call[5], call[6], call[7], cost, peek, margin)
end
local replies = {}
local admitted = true
for i = 1, n do
  replies[i] = run(calls[i], true, calls[i][8])
  if replies[i][1] ~= 1 then
    admitted = false
  end
end
for i = 1, n do
  if admitted then
    replies[i] = run(calls[i], false, calls[i][8])
  elseif replies[i][1] == 1 then
    replies[i] = run(calls[i], true, 0)
  end
end
local out = {}
for i = 1, n do
  for j = 1, 6 do
    out[#out + 1] = replies[i][j]
  end
end
return out
