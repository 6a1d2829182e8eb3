-- Give up what a permit token may hold: the half-open probe lease and its place among an
-- unproven provider's unanswered requests. Idempotent: an acquire that timed out on the
-- instance may still have run in Redis (after a stall), so its token is released blindly.
-- KEYS: breaker hash, in-flight set.  ARGV: token, keep_ms
local token, keep = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local removed = redis.call('ZREM', KEYS[2], token)
local b = load(KEYS[1])
local held = b.state == 'half_open' and b.probe_owner == token
if held then
  b.probe_owner, b.probe_until = '', 0
  save(KEYS[1], b, now, keep)
end
return reply(b, now, {released = held or removed == 1})
