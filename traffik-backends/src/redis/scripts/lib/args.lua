-- The arguments of one decision (see prelude.lua), as the strategy scripts
-- name them. The group script passes the same names to each strategy instead.
local count = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local drain = tonumber(ARGV[4])
local unit = tonumber(ARGV[5])
local burst = tonumber(ARGV[6])
local cost = tonumber(ARGV[7])
local peek = ARGV[8] == '1'
local margin = tonumber(ARGV[9])
local now = now_ms()
