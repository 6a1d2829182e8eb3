-- A success's response headers came: the provider answers. Held requests may go; a
-- half-open probe's lease now runs to the end of its request (its body or stream).
-- KEYS: breaker hash, in-flight set.  ARGV: token, keep_ms, lease_ms (the rest of the request)
local now = now_ms()
redis.call('ZREM', KEYS[2], ARGV[1])
local b = load(KEYS[1])
if b.state == 'closed' and b.proven == 0 then
  b.proven = 1
  save(KEYS[1], b, now, tonumber(ARGV[2]))
elseif b.state == 'half_open' and b.probe_owner == ARGV[1] and ARGV[3] then
  b.probe_until = now + tonumber(ARGV[3])
  save(KEYS[1], b, now, tonumber(ARGV[2]))
end
return reply(b, now)
