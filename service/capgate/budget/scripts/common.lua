-- Shared prelude of capgate's budget scripts (authorize.lua, settle.lua). The
-- sidecar sends it concatenated in front of each script, so both run as one
-- script each: one round trip, atomic.
--
-- Time is Redis TIME (seconds, microseconds), never the sidecar's clock.
-- Usage hash fields (one hash per budget and window):
--   calls, spent_usd_micros, reserved_usd_micros, spent_tokens, reserved_tokens
-- Reservation record (a hash, one per allowed decision), fields:
--   s  state: reserved | expired | succeeded | failed | reverted | abandoned
--   u  estimated usd_micros, t estimated tokens, c calls (1)
--   e  expiry, milliseconds since the epoch
--   k  the usage key of each budget, in budget order, joined by "\n" (keys never
--      contain a newline; two budgets may share a key, which holds the call once)
--   m  the sidecar's JSON metadata (budget specs, tenant, workflow, ...), opaque here
--   o  settled outcome reply (after Settle), opaque here

local USAGE_FIELDS = {"calls", "spent_usd_micros", "reserved_usd_micros", "spent_tokens",
  "reserved_tokens"}
-- How long a settled or expired reservation record is kept, so Settle stays idempotent.
local SETTLED_KEEP_SECONDS = 86400
-- Expired reservations released per script call, to bound each call's work.
local PURGE_BATCH = 100

local function now_micros()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000000 + tonumber(t[2]), tonumber(t[1])
end

local floor = math.floor

-- Civil date <-> days since 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level
-- Date Algorithms", proleptic Gregorian, UTC).
local function civil_from_days(days)
  local z = days + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local FIXED_WINDOW_SECONDS = {["1m"] = 60, ["1h"] = 3600, ["1d"] = 86400}

-- The calendar window (UTC) that contains now_s: its key suffix and its end, in
-- seconds since the epoch. "30d" is the calendar month. "run" has no end.
local function window_of(code, now_s)
  local length = FIXED_WINDOW_SECONDS[code]
  if length then
    local start = now_s - now_s % length
    return code .. ":" .. string.format("%d", start), start + length
  end
  if code == "30d" then
    local y, m = civil_from_days(floor(now_s / 86400))
    local ny, nm = y, m + 1
    if nm == 13 then ny, nm = y + 1, 1 end
    return string.format("30d:%04d-%02d", y, m), days_from_civil(ny, nm, 1) * 86400
  end
  return "run", nil
end

local function split_lines(text)
  local out = {}
  for line in string.gmatch(text, "[^\n]+") do out[#out + 1] = line end
  return out
end

-- The items of list, each once, in order.
local function distinct(list)
  local out, seen = {}, {}
  for _, item in ipairs(list) do
    if not seen[item] then
      seen[item] = true
      out[#out + 1] = item
    end
  end
  return out
end

-- HINCRBY unless delta is 0 (Lua's -0 would format as "-0", which Redis refuses).
local function add(key, field, delta)
  if delta ~= 0 then redis.call("HINCRBY", key, field, delta) end
end

-- Release expired reservations of this tenant (zset member = record key, score =
-- expiry in ms): their reserved amounts leave every usage key that still exists.
-- Calls stay counted (the call may have run). Returns how many were released.
local function purge_expired(zset, now_ms)
  local due = redis.call("ZRANGEBYSCORE", zset, "-inf", now_ms, "LIMIT", 0, PURGE_BATCH)
  local released = 0
  for _, record in ipairs(due) do
    local r = redis.call("HMGET", record, "s", "u", "t", "k")
    if r[1] == "reserved" then
      for _, key in ipairs(distinct(split_lines(r[4]))) do
        if redis.call("EXISTS", key) == 1 then
          add(key, "reserved_usd_micros", -tonumber(r[2]))
          add(key, "reserved_tokens", -tonumber(r[3]))
        end
      end
      redis.call("HSET", record, "s", "expired")
      redis.call("EXPIRE", record, SETTLED_KEEP_SECONDS)
      released = released + 1
    end
    redis.call("ZREM", zset, record)
  end
  return released
end

-- {calls, spent_usd, reserved_usd, spent_tokens, reserved_tokens} of a usage key.
local function usage_of(key)
  local v = redis.call("HMGET", key, unpack(USAGE_FIELDS))
  for i = 1, #USAGE_FIELDS do v[i] = tonumber(v[i]) or 0 end
  return v
end

-- Extend a key's TTL to at least ttl_ms (never shorten it).
local function keep_at_least(key, ttl_ms)
  if redis.call("PTTL", key) < ttl_ms then
    redis.call("PEXPIRE", key, ttl_ms)
  end
end
