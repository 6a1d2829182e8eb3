-- The active provider of an app, by compare-and-set on its generation: one outage makes one
-- switch event across the fleet, and so does the failback.
-- KEYS: active hash, event stream
-- ARGV: me, channel, app, to, expected_gen, baseline, reason, min_interval_ms, mode,
--       decided_ms
-- mode 'cas': the switch when the generation is still expected_gen (and the last switch is
--   min_interval_ms old); 'seed': an emptied Redis takes the instance's view, no event (no
--   one switched); 'reconcile': a switch this instance made alone while Redis was
--   unreachable (at decided_ms, Redis's clock) becomes the fleet's, unless the fleet
--   switched after it; 'rebase': a reload moved where the app's queue starts, the active
--   provider goes there with no event (every instance reloads the same file).
local me, channel, app, to = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local expected, baseline, reason = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local min_interval, mode, decided = tonumber(ARGV[8]), ARGV[9] or 'cas', tonumber(ARGV[10] or 0)
local now = now_ms()
local v = redis.call('HMGET', KEYS[1], 'provider', 'gen', 'since', 'by', 'reason')
local a = {provider = v[1] or baseline, gen = tonumber(v[2]) or 0, since = tonumber(v[3]) or 0,
           by = v[4] or '', reason = v[5] or ''}
local function out(switched, id)
  return cjson.encode({now = now, active = a, switched = switched, id = id})
end
if mode == 'seed' then
  if v[1] then return out(false, '') end
  a.provider, a.gen, a.since, a.by, a.reason = to, math.max(a.gen + 1, now), 0, me, 'seeded'
  redis.call('HSET', KEYS[1], 'provider', to, 'gen', a.gen, 'since', 0, 'by', me,
             'reason', 'seeded')
  return out(false, '')
end
if a.provider == to then return out(false, '') end
if mode == 'rebase' then
  a.provider, a.gen, a.by, a.reason = to, math.max(a.gen + 1, now), me, reason
  redis.call('HSET', KEYS[1], 'provider', to, 'gen', a.gen, 'since', a.since, 'by', me,
             'reason', reason)
  return out(false, '')
end
if mode == 'reconcile' then
  if a.since > decided then return out(false, '') end
elseif a.gen ~= expected or now - a.since < min_interval then
  return out(false, '')
end
local from = a.provider
a.provider, a.gen, a.since, a.by, a.reason = to, math.max(a.gen + 1, now), now, me, reason
redis.call('HSET', KEYS[1], 'provider', a.provider, 'gen', a.gen, 'since', a.since, 'by', me,
           'reason', reason)
local id = emit(KEYS[2], channel, {v = 1, type = 'switch', app = app, from = from, to = to,
                                   reason = reason, gen = a.gen, ts = now, by = me})
return out(true, id)
