-- A permit that needs the fleet's agreement: the half-open probe (a lease, owned by one
-- permit token, taken over only after it expires) or one of an unproven provider's
-- limited unanswered requests (a sorted set of tokens with their own expiry).
-- KEYS: breaker hash, in-flight set, event stream
-- ARGV: me, channel, app, provider, token, probe_lease_ms, hold (1/0), failure_threshold,
--       keep_ms, inflight_ms, valid_until_ms (0: no limit)
-- valid_until is when the instance stops waiting for the answer (on Redis's clock, as far as
-- it knows it): run later (Redis was stalled), the call takes nothing, since no request
-- would ever give it back.
local me, channel, app, pid, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local lease, hold, threshold = tonumber(ARGV[6]), ARGV[7] == '1', tonumber(ARGV[8])
local keep, inflight_ms = tonumber(ARGV[9]), tonumber(ARGV[10])
local valid_until = tonumber(ARGV[11] or 0)
local now = now_ms()
if valid_until > 0 and now > valid_until then
  return reply(load(KEYS[1]), now, {ok = 0, probe = 0, late = 1})
end
local b = load(KEYS[1])
local ok, probe = 0, 0
if b.cool_until > now then
  ok = 0
elseif b.state == 'open' then
  if now >= b.open_until then
    local old = transition(b, 'half_open', now, me)
    b.probe_owner, b.probe_until = token, now + lease
    ok, probe = 1, 1
    save(KEYS[1], b, now, keep)
    emit(KEYS[3], channel, breaker_event(app, pid, old, b, now))
    return reply(b, now, {ok = ok, probe = probe})
  end
elseif b.state == 'half_open' then
  if b.probe_owner == token or b.probe_owner == '' or b.probe_until <= now then
    b.probe_owner, b.probe_until = token, now + lease
    ok, probe = 1, 1
    save(KEYS[1], b, now, keep)
  end
elseif b.proven == 1 then
  ok = 1
else
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local limit = math.max(1, threshold - b.fails)
  if not hold or redis.call('ZCARD', KEYS[2]) < limit then
    redis.call('ZADD', KEYS[2], now + inflight_ms, token)
    redis.call('PEXPIRE', KEYS[2], inflight_ms)
    ok = 1
  end
end
return reply(b, now, {ok = ok, probe = probe, inflight = redis.call('ZCARD', KEYS[2])})
