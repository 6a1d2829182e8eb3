-- One outcome of one permit. Transitions, the shared error-rate window (time buckets with a
-- TTL, keyed by the closed spell they belong to) and cooldowns, all on Redis's clock.
-- KEYS: breaker hash, in-flight set, event stream
-- ARGV: me, channel, app, provider, token, effect (success/failure/neutral), opens_now,
--       slow, failure_threshold, success_threshold, open_ms, max_open_ms,
--       error_rate_threshold, min_requests, window_ms, slow_rate_threshold (0 = off),
--       cooldown_ms, cooldown_reason, keep_ms, jitter (0..1), window key prefix
local me, channel, app, pid, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local effect, opens_now, slow = ARGV[6], ARGV[7] == '1', ARGV[8] == '1'
local fail_thr, succ_thr = tonumber(ARGV[9]), tonumber(ARGV[10])
local open_ms, max_open_ms = tonumber(ARGV[11]), tonumber(ARGV[12])
local rate, min_req, window_ms = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local slow_rate, cooldown_ms, cooldown_reason = tonumber(ARGV[16]), tonumber(ARGV[17]), ARGV[18]
local keep, jitter, wprefix = tonumber(ARGV[19]), tonumber(ARGV[20]), ARGV[21]

local now = now_ms()
if token ~= '' then redis.call('ZREM', KEYS[2], token) end
local b = load(KEYS[1])
local before = copy(b)
local old = b.state
local is_probe = token ~= '' and b.state == 'half_open' and b.probe_owner == token
if is_probe then
  b.probe_owner, b.probe_until = '', 0
end
if cooldown_ms > 0 and now + cooldown_ms > b.cool_until then
  b.cool_until, b.cool_reason = now + cooldown_ms, cooldown_reason
  b.by, b.changed = me, now
  b.gen = math.max(b.gen + 1, now)
end

local function trip()
  if b.state == 'closed' and now - b.closed_since >= 4 * open_ms then b.trips = 0 end
  b.trips = b.trips + 1
  local ms = open_ms
  if b.trips > 1 then
    ms = math.min(open_ms * 2 ^ (b.trips - 1) * (0.9 + 0.2 * jitter), math.max(max_open_ms, open_ms))
  end
  transition(b, 'open', now, me)
  b.open_until = now + math.floor(ms)
end

if effect ~= 'neutral' then
  local failed = effect == 'failure'
  -- about a dozen buckets cover the window, whatever its length
  local bucket_ms = math.max(1000, math.ceil(window_ms / 12000) * 1000)
  local epoch = wprefix .. b.closed_since .. ':'
  local current = math.floor(now / bucket_ms)
  local wkey = epoch .. current
  if redis.call('HINCRBY', wkey, 'n', 1) == 1 then  -- a new bucket
    redis.call('PEXPIRE', wkey, window_ms + bucket_ms)
  end
  if failed then redis.call('HINCRBY', wkey, 'f', 1) end
  if slow then redis.call('HINCRBY', wkey, 's', 1) end
  local function counts()
    local n, f, s = 0, 0, 0
    for k = math.floor((now - window_ms) / bucket_ms) + 1, current do
      local v = redis.call('HMGET', epoch .. k, 'n', 'f', 's')
      n, f, s = n + (tonumber(v[1]) or 0), f + (tonumber(v[2]) or 0), s + (tonumber(v[3]) or 0)
    end
    return n, f, s
  end
  if is_probe then
    if failed then
      trip()
    else
      b.succ = b.succ + 1
      if b.succ >= succ_thr then transition(b, 'closed', now, me) end
    end
  elseif b.state == 'closed' then
    if not failed then
      b.fails, b.proven = 0, 1
      if slow and slow_rate > 0 then
        local n, _, s = counts()
        if s > 0 and n >= min_req and s / n >= slow_rate then trip() end
      end
    else
      b.fails, b.proven = b.fails + 1, 0
      local tripped = opens_now or b.fails >= fail_thr
      if not tripped then
        local n, f = counts()
        tripped = f > 0 and n >= min_req and f / n >= rate
      end
      if tripped then trip() end
    end
  end
end
-- A success on a healthy provider changes nothing here: no write (the common case).
if differs(b, before) then save(KEYS[1], b, now, keep) end
if b.state ~= old then
  emit(KEYS[3], channel, breaker_event(app, pid, old, b, now))
end
return reply(b, now, {changed = b.state ~= old})
