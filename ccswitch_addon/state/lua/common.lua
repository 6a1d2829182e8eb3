-- Shared by every breaker script (prepended by state/shared.py). Redis's own clock only:
-- instances need no clock agreement. Generations are max(gen + 1, now_ms), so they keep
-- growing across a Redis restart that lost the data.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local NUMBERS = {'fails', 'succ', 'open_until', 'trips', 'closed_since', 'probe_until',
                 'gen', 'proven', 'cool_until', 'changed'}
local TEXTS = {'state', 'probe_owner', 'by', 'cool_reason'}

local function load(key)
  local fields = {}
  for _, f in ipairs(NUMBERS) do fields[#fields + 1] = f end
  for _, f in ipairs(TEXTS) do fields[#fields + 1] = f end
  local values = redis.call('HMGET', key, unpack(fields))
  local b = {}
  for i, f in ipairs(NUMBERS) do b[f] = tonumber(values[i]) or 0 end
  for i, f in ipairs(TEXTS) do b[f] = values[#NUMBERS + i] or '' end
  if b.state == '' then b.state = 'closed' end
  return b
end

local function copy(b)
  local c = {}
  for k, v in pairs(b) do c[k] = v end
  return c
end

local function differs(b, before)
  for k, v in pairs(b) do
    if before[k] ~= v then return true end
  end
  return false
end

-- Every write renews the key's life: removed providers' keys expire on their own.
local function save(key, b, now, keep_ms)
  local args = {}
  for _, f in ipairs(NUMBERS) do args[#args + 1] = f; args[#args + 1] = tostring(b[f]) end
  for _, f in ipairs(TEXTS) do args[#args + 1] = f; args[#args + 1] = b[f] end
  redis.call('HSET', key, unpack(args))
  local ttl = math.max(b.open_until - now, b.cool_until - now, 0) + keep_ms
  redis.call('PEXPIRE', key, ttl)
end

local function transition(b, new, now, me)
  local old = b.state
  b.state = new
  b.gen = math.max(b.gen + 1, now)
  b.by = me
  b.changed = now
  b.probe_owner = ''
  b.probe_until = 0
  b.succ = 0
  b.fails = 0
  if new == 'closed' then
    b.open_until = 0
    b.closed_since = now
    b.proven = (old == 'half_open') and 1 or 0
  else
    b.proven = 0
  end
  return old
end

-- The event goes into the capped stream (late joiners, lost pub/sub messages) and out on
-- the channel, atomically with the change that made it.
local function emit(stream, channel, event)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', 1000, '*', 'e', cjson.encode(event))
  event.id = id
  redis.call('PUBLISH', channel, cjson.encode(event))
  return id
end

local function breaker_event(app, pid, old, b, now)
  return {v = 1, type = 'breaker', app = app, provider = pid, from = old, to = b.state,
          gen = b.gen, ts = now, by = b.by, b = b}
end

local function reply(b, now, extra)
  local out = {now = now, b = b}
  for k, v in pairs(extra or {}) do out[k] = v end
  return cjson.encode(out)
end
