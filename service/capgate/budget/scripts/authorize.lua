-- Admit one decision, atomically (DESIGN §6): replay a recorded idempotency key,
-- release expired reservations, check every rate limit (GCRA) and budget, and, if
-- all pass, consume them and record the reservation and the idempotency key. All
-- or nothing: a refused decision writes nothing but the release of expired ones.
--
-- KEYS[1]  the tenant's open-reservation zset
-- KEYS[2]  this decision's reservation record
-- KEYS[3]  the idempotency record (unused when ARGV[2] is "0")
-- KEYS[3+i], i = 1..nb        usage key prefix of budget i (the window is appended)
-- KEYS[3+nb+j], j = 1..nr     GCRA bucket of rate limit j
--
-- ARGV[1]  "1": consume (reserve budgets, take rate-limit tokens, record the
--          reservation); "0": check only (dry run, or a decision awaiting approval)
-- ARGV[2]  "1": look up and record the idempotency key
-- ARGV[3]  request fingerprint (hex SHA-256)
-- ARGV[4]  decision template, stored opaque with the idempotency key
-- ARGV[5]  calls of this decision (1), ARGV[6] estimated usd_micros, ARGV[7] estimated tokens
-- ARGV[8]  reservation TTL, seconds; ARGV[9] idempotency TTL, seconds;
-- ARGV[10] run window TTL, seconds
-- ARGV[11] reservation metadata, stored opaque
-- ARGV[12] nb, ARGV[13] nr
-- then 4 per budget: window ("run"|"1m"|"1h"|"1d"|"30d"), limit_calls,
--        limit_usd_micros, limit_tokens (-1: no limit)
-- then 2 per rate limit: emission interval and tolerance, microseconds
--
-- Replies:
--   {"ok", released, u_1..u_nb}  u_i = 5 usage values of budget i (USAGE_FIELDS order),
--                                including this decision when it consumed
--   {"budget", i, unit, released}       budget i would be exceeded in unit
--                                       "calls" | "usd_micros" | "tokens"
--   {"rate", j, retry_after_micros, released}
--   {"replay", template, usage_csv}     the idempotency key was recorded for this request
--   {"conflict"}                        ... for a different request
local consume = ARGV[1] == "1"
local idempotent = ARGV[2] == "1"
local cost_calls, cost_usd, cost_tokens = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local reservation_ttl_s, idempotency_ttl_s = tonumber(ARGV[8]), tonumber(ARGV[9])
local run_ttl_s = tonumber(ARGV[10])
local nb, nr = tonumber(ARGV[12]), tonumber(ARGV[13])
local BUDGET_ARGS, RATE_ARGS = 14, 14 + 4 * nb

if idempotent then
  local seen = redis.call("HMGET", KEYS[3], "f", "d", "r")
  if seen[1] then
    if seen[1] == ARGV[3] then return {"replay", seen[2], seen[3]} end
    return {"conflict"}
  end
end

local now_us, now_s = now_micros()
local now_ms = floor(now_us / 1000)
local released = purge_expired(KEYS[1], now_ms)

-- Rate limits (GCRA, "theoretical arrival time" per bucket).
local new_tats = {}
for j = 1, nr do
  local interval = tonumber(ARGV[RATE_ARGS + 2 * (j - 1)])
  local tolerance = tonumber(ARGV[RATE_ARGS + 2 * (j - 1) + 1])
  local tat = math.max(tonumber(redis.call("GET", KEYS[3 + nb + j])) or 0, now_us)
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if allow_at > now_us then
    return {"rate", j, math.ceil(allow_at - now_us), released}
  end
  new_tats[j] = new_tat
end

-- Budgets.
local keys, ttls, usages = {}, {}, {}
local UNIT_CHECKS = {
  {"calls", function(u) return u[1] + cost_calls end},
  {"usd_micros", function(u) return u[2] + u[3] + cost_usd end},
  {"tokens", function(u) return u[4] + u[5] + cost_tokens end},
}
for i = 1, nb do
  local base = BUDGET_ARGS + 4 * (i - 1)
  local suffix, window_end = window_of(ARGV[base], now_s)
  local key = KEYS[3 + i] .. ":" .. suffix
  local usage = usage_of(key)
  for n, check in ipairs(UNIT_CHECKS) do
    local limit = tonumber(ARGV[base + n])
    if limit >= 0 and check[2](usage) > limit then
      return {"budget", i, check[1], released}
    end
  end
  keys[i], usages[i] = key, usage
  -- a window's key outlives its end by the reservation TTL, so a late Settle finds it
  ttls[i] = window_end and (window_end - now_s + reservation_ttl_s + 60) or run_ttl_s
end

if consume then
  local record_ttl_s = reservation_ttl_s + 60
  -- Two budgets of one scope and window (a spend limit and a call limit, say) share a
  -- usage key: it is consumed once, and both report the same usage.
  local held = {}
  for i = 1, nb do
    local u = usages[i]
    if not held[keys[i]] then
      add(keys[i], "calls", cost_calls)
      add(keys[i], "reserved_usd_micros", cost_usd)
      add(keys[i], "reserved_tokens", cost_tokens)
      u[1], u[3], u[5] = u[1] + cost_calls, u[3] + cost_usd, u[5] + cost_tokens
      redis.call("EXPIRE", keys[i], ttls[i])
      record_ttl_s = math.max(record_ttl_s, ttls[i])
      held[keys[i]] = u
    else
      usages[i] = held[keys[i]]
    end
  end
  for j = 1, nr do
    local bucket_ttl_ms = math.ceil((new_tats[j] - now_us) / 1000)
    redis.call("SET", KEYS[3 + nb + j], string.format("%d", new_tats[j]), "PX", bucket_ttl_ms)
  end
  local expires_ms = now_ms + reservation_ttl_s * 1000
  redis.call("HSET", KEYS[2], "s", "reserved", "u", cost_usd, "t", cost_tokens, "c", cost_calls,
    "e", expires_ms, "k", table.concat(keys, "\n"), "m", ARGV[11])
  redis.call("EXPIRE", KEYS[2], record_ttl_s)
  redis.call("ZADD", KEYS[1], expires_ms, KEYS[2])
  keep_at_least(KEYS[1], record_ttl_s * 1000)
end

local reply = {"ok", released}
local flat = {}
for i = 1, nb do
  for n = 1, #USAGE_FIELDS do
    reply[#reply + 1] = usages[i][n]
    flat[#flat + 1] = string.format("%d", usages[i][n])
  end
end
if idempotent then
  redis.call("HSET", KEYS[3], "f", ARGV[3], "d", ARGV[4], "r", table.concat(flat, ","))
  redis.call("EXPIRE", KEYS[3], idempotency_ttl_s)
end
return reply
