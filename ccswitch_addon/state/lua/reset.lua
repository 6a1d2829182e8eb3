-- Manual reset (closed, counters and cooldown cleared) or an active probe's success
-- (open → half_open at once, so a real request confirms the recovery).
-- KEYS: breaker hash, in-flight set, event stream.  ARGV: me, channel, app, provider, mode, keep_ms
local me, channel, app, pid, mode, keep = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local now = now_ms()
local b = load(KEYS[1])
local old = b.state
if mode == 'reset' then
  transition(b, 'closed', now, me)
  b.trips, b.cool_until, b.cool_reason = 0, 0, ''
  redis.call('DEL', KEYS[2])
elseif b.state == 'open' then
  transition(b, 'half_open', now, me)
  b.open_until = now
else
  return reply(b, now)
end
save(KEYS[1], b, now, keep)
emit(KEYS[3], channel, breaker_event(app, pid, old, b, now))
return reply(b, now)
