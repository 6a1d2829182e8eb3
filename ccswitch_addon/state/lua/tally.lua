-- Successes of a healthy provider, added up by one instance over the last second: only the
-- shared window learns from them (a success that changes anything is recorded at once).
-- KEYS: breaker hash.  ARGV: window key prefix, window_ms, successes
local now = now_ms()
local b = load(KEYS[1])
if b.state == 'closed' then
  local window_ms = tonumber(ARGV[2])
  local bucket_ms = math.max(1000, math.ceil(window_ms / 12000) * 1000)
  local wkey = ARGV[1] .. b.closed_since .. ':' .. math.floor(now / bucket_ms)
  if redis.call('HINCRBY', wkey, 'n', tonumber(ARGV[3])) == tonumber(ARGV[3]) then
    redis.call('PEXPIRE', wkey, window_ms + bucket_ms)
  end
end
return reply(b, now)
