-- A success's response headers came: the provider answers. Held requests may go.
-- KEYS: breaker hash, in-flight set.  ARGV: token, keep_ms
local now = now_ms()
redis.call('ZREM', KEYS[2], ARGV[1])
local b = load(KEYS[1])
if b.state == 'closed' and b.proven == 0 then
  b.proven = 1
  save(KEYS[1], b, now, tonumber(ARGV[2]))
end
return reply(b, now)
