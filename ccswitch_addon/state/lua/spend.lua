-- A request's cost added to its provider's spend, one key per period (day, month), each
-- kept a day past its period's end. Atomic, so a fleet's instances add up exactly.
-- KEYS: the period keys.  ARGV[1]: USD.  ARGV[1 + i]: seconds KEYS[i] lives.
-- Returns the totals after the addition, as strings (Lua would truncate numbers).
local totals = {}
for i, k in ipairs(KEYS) do
  totals[i] = redis.call('INCRBYFLOAT', k, ARGV[1])
  redis.call('EXPIRE', k, tonumber(ARGV[i + 1]))
end
return totals
