-- An instance's open breaker, written back when it is in sync again: one it tripped on its
-- own while Redis was unreachable (decided_ms: when, on Redis's clock), or one it still
-- holds open that an emptied Redis no longer has (decided_ms = 0: only into a missing key).
-- Whatever the fleet did after that decision (a newer transition, a probe) wins.
-- KEYS: breaker hash, event stream
-- ARGV: me, channel, app, provider, open_ms (left of its open time), decided_ms, trips,
--       keep_ms
local me, channel, app, pid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local open_ms, decided, trips = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local keep = tonumber(ARGV[8])
local now = now_ms()
local exists = redis.call('EXISTS', KEYS[1]) == 1
local b = load(KEYS[1])
local stale = not exists or (decided > 0 and b.state == 'closed' and b.changed < decided)
if open_ms <= 0 or not stale then
  return reply(b, now, {written = false})
end
local old = transition(b, 'open', now, me)
b.open_until = now + open_ms
b.trips = math.max(b.trips, trips)
save(KEYS[1], b, now, keep)
emit(KEYS[2], channel, breaker_event(app, pid, old, b, now))
return reply(b, now, {written = true})
