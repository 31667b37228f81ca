-- Admit one decision, atomically (DESIGN §6, §7): check the run's stop and the
-- tenant's mode, replay a recorded idempotency key, check a referenced approval,
-- release expired reservations, check every rate limit (GCRA) and budget, and, if
-- all pass, consume them (and the approval), create the approval a REQUIRE_APPROVAL
-- asks for, and record the reservation and the idempotency key. All or nothing: a
-- refused decision writes nothing but the release of expired ones.
--
-- KEYS[1]  the tenant's open-reservation zset
-- KEYS[2]  this decision's reservation record
-- KEYS[3]  the idempotency record (unused when ARGV[2] is "0")
-- KEYS[4]  the tenant's control hash (field "mode": read_only | frozen)
-- KEYS[5]  the run's stop record (exists once the run is stopped)
-- KEYS[6]  the approval this request presents (unused when ARGV[16] is "0")
-- KEYS[7]  the record of the approval to create (unused when ARGV[18] is "")
-- KEYS[8]  the pending index of this action: the record key of its pending approval
-- KEYS[9]  the tenant's approval index, KEYS[10] its approval log, KEYS[11] its
--          approval expiry zset
-- KEYS[11+i], i = 1..nb       usage key prefix of budget i (the window is appended)
-- KEYS[11+nb+j], j = 1..nr    GCRA bucket of rate limit j
--
-- ARGV[1]  "1": consume (reserve budgets, take rate-limit tokens, record the
--          reservation, consume the approval); "0": check only (dry run, or a
--          decision awaiting approval)
-- ARGV[2]  "1": look up and record the idempotency key
-- ARGV[3]  request fingerprint (hex SHA-256)
-- ARGV[4]  decision template, stored opaque with the idempotency key
-- ARGV[5]  calls of this decision (1), ARGV[6] estimated usd_micros, ARGV[7] estimated tokens
-- ARGV[8]  reservation TTL, seconds; ARGV[9] idempotency TTL, seconds;
-- ARGV[10] run window TTL, seconds
-- ARGV[11] reservation metadata, stored opaque
-- ARGV[12] decision id; ARGV[13] requesting principal id
-- ARGV[14] the action's class ("read" | "write") to check against the run's stop
--          and the tenant's mode; "" skips the check (a policy DENY)
-- ARGV[15] the request's fingerprint without its approval_id: a request that adds
--          a verified approval to a recorded REQUIRE_APPROVAL is its continuation
-- ARGV[16] the request presents the approval KEYS[6], verified by the sidecar: "1" to
--          check and (when consuming) consume it, "2" only to continue a recorded
--          REQUIRE_APPROVAL; "0" presents none. ARGV[17] its action hash
-- ARGV[18] JSON of the approval to create ("" for none): {i, j, r, o, a, R, q, ttl_ms}
-- ARGV[19] nb, ARGV[20] nr
-- then 4 per budget: window ("run"|"1m"|"1h"|"1d"|"30d"), limit_calls,
--        limit_usd_micros, limit_tokens (-1: no limit)
-- then 2 per rate limit: emission interval and tolerance, microseconds
--
-- Replies:
--   {"ok", released, approval_id, expires_ms, expired, u_1..u_nb}  approval_id: the
--       approval created or reused ("" for none), expires_ms its expiry;
--       expired: JSON ids of approvals that expired now; u_i = 5 usage values of
--       budget i (USAGE_FIELDS order), including this decision when it consumed
--   {"budget", i, unit, released}       budget i would be exceeded in unit
--                                       "calls" | "usd_micros" | "tokens"
--   {"rate", j, retry_after_micros, released}
--   {"control", code}                   RUN_STOPPED | TENANT_FROZEN | TENANT_READ_ONLY
--   {"approval", state, expired}        the approval is not usable: its state
--                                       ("missing", "pending", "expired", "consumed",
--                                       "rejected", or "mismatch": another action)
--   {"replay", template, usage_csv, approval_id, expires_ms, approval_state}
--                                       the idempotency key was recorded for this request
--                                       (unless its approval expired: then decided afresh)
--   {"conflict"}                        ... for a different request
local consume = ARGV[1] == "1"
local idempotent = ARGV[2] == "1"
local cost_calls, cost_usd, cost_tokens = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local reservation_ttl_s, idempotency_ttl_s = tonumber(ARGV[8]), tonumber(ARGV[9])
local run_ttl_s = tonumber(ARGV[10])
local decision_id, principal_id = ARGV[12], ARGV[13]
local action_class = ARGV[14]
local presents_approval = ARGV[16] ~= "0"
local uses_approval = ARGV[16] == "1"
local nb, nr = tonumber(ARGV[19]), tonumber(ARGV[20])
local NB_KEYS = 11
local BUDGET_ARGS, RATE_ARGS = 21, 21 + 4 * nb
local log, expiry = KEYS[10], KEYS[11]

-- The stop button first: nothing, not even a recorded decision, passes it.
if action_class ~= "" then
  if redis.call("EXISTS", KEYS[5]) == 1 then return {"control", "RUN_STOPPED"} end
  local mode = redis.call("HGET", KEYS[4], "mode")
  if mode == "frozen" then return {"control", "TENANT_FROZEN"} end
  if mode == "read_only" and action_class ~= "read" then
    return {"control", "TENANT_READ_ONLY"}
  end
end

local now_us, now_s = now_micros()
local now_ms = floor(now_us / 1000)
local expired = {}

if idempotent then
  local seen = redis.call("HMGET", KEYS[3], "f", "d", "r", "b", "c", "a", "x")
  if seen[1] then
    if seen[1] == ARGV[3] then
      local state = ""
      if seen[6] and seen[6] ~= "" then
        local id = expire_if_due(seen[6], now_ms, log, expiry)
        if id then expired[#expired + 1] = id end
        state = redis.call("HGET", seen[6], "s") or "expired"
      end
      local approval_id = ""
      if seen[6] and seen[6] ~= "" then approval_id = redis.call("HGET", seen[6], "i") or "" end
      -- a REQUIRE_APPROVAL whose approval expired unanswered is asked again, afresh
      if state ~= "expired" then
        return {"replay", seen[2], seen[3], approval_id, seen[7] or "0", state}
      end
    end
    local same = seen[1] == ARGV[3]  -- here: its approval expired
    if not same and not (seen[4] == ARGV[15] and seen[5] == "1" and presents_approval) then
      return {"conflict"}
    end
    -- a continuation: decided afresh, and recorded over the REQUIRE_APPROVAL below
  end
end

if uses_approval then
  local id = expire_if_due(KEYS[6], now_ms, log, expiry)
  if id then expired[#expired + 1] = id end
  local a = redis.call("HMGET", KEYS[6], "s", "a")
  if not a[1] then return {"approval", "missing", cjson.encode(expired)} end
  if a[1] ~= "approved" then return {"approval", a[1], cjson.encode(expired)} end
  if a[2] ~= ARGV[17] then return {"approval", "mismatch", cjson.encode(expired)} end
end

local released = purge_expired(KEYS[1], now_ms)

-- Rate limits (GCRA, "theoretical arrival time" per bucket).
local new_tats = {}
for j = 1, nr do
  local interval = tonumber(ARGV[RATE_ARGS + 2 * (j - 1)])
  local tolerance = tonumber(ARGV[RATE_ARGS + 2 * (j - 1) + 1])
  local tat = math.max(tonumber(redis.call("GET", KEYS[NB_KEYS + nb + j])) or 0, now_us)
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
  local key = KEYS[NB_KEYS + i] .. ":" .. suffix
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
    redis.call("SET", KEYS[NB_KEYS + nb + j], string.format("%d", new_tats[j]), "PX", bucket_ttl_ms)
  end
  local expires_ms = now_ms + reservation_ttl_s * 1000
  redis.call("HSET", KEYS[2], "s", "reserved", "u", cost_usd, "t", cost_tokens, "c", cost_calls,
    "e", expires_ms, "k", table.concat(keys, "\n"), "m", ARGV[11])
  redis.call("EXPIRE", KEYS[2], record_ttl_s)
  redis.call("ZADD", KEYS[1], expires_ms, KEYS[2])
  keep_at_least(KEYS[1], record_ttl_s * 1000)
  if uses_approval then
    transition(KEYS[6], "approved", "consumed", now_ms, log, expiry, principal_id,
      {"c", decision_id})
  end
end

-- The approval a REQUIRE_APPROVAL asks for: the pending one of this exact action, or
-- a new one.
local approval, approval_expires_ms = "", 0
if ARGV[18] ~= "" then
  local pending = redis.call("GET", KEYS[8])
  if pending then
    local id = expire_if_due(pending, now_ms, log, expiry)
    if id then expired[#expired + 1] = id end
    if redis.call("HGET", pending, "s") == "pending" then
      approval, approval_expires_ms = pending, tonumber(redis.call("HGET", pending, "e"))
    end
  end
  if approval == "" then
    local spec = cjson.decode(ARGV[18])
    approval, approval_expires_ms = KEYS[7], now_ms + spec.ttl_ms
    redis.call("HSET", approval, "i", spec.i, "j", spec.j, "s", "pending", "r", spec.r,
      "o", spec.o, "a", spec.a, "R", spec.R, "q", spec.q, "v", "[]", "c", "", "t", now_ms,
      "e", approval_expires_ms, "u", now_ms, "p", KEYS[8])
    redis.call("PEXPIRE", approval, spec.ttl_ms + APPROVAL_KEEP_SECONDS * 1000)
    redis.call("SET", KEYS[8], approval, "PX", spec.ttl_ms)
    redis.call("ZADD", KEYS[9], now_ms, approval)
    keep_at_least(KEYS[9], (spec.ttl_ms + APPROVAL_KEEP_SECONDS * 1000) * 2)
    redis.call("ZADD", expiry, approval_expires_ms, approval)
    keep_at_least(expiry, spec.ttl_ms + APPROVAL_KEEP_SECONDS * 1000)
    log_transition(log, approval, "", principal_id)
  end
end

local approval_id = approval ~= "" and redis.call("HGET", approval, "i") or ""
local reply = {"ok", released, approval_id, approval_expires_ms, cjson.encode(expired)}
local flat = {}
for i = 1, nb do
  for n = 1, #USAGE_FIELDS do
    reply[#reply + 1] = usages[i][n]
    flat[#flat + 1] = string.format("%d", usages[i][n])
  end
end
if idempotent then
  redis.call("HSET", KEYS[3], "f", ARGV[3], "d", ARGV[4], "r", table.concat(flat, ","),
    "b", ARGV[15], "c", approval ~= "" and "1" or "0", "a", approval, "x", approval_expires_ms)
  redis.call("EXPIRE", KEYS[3], idempotency_ttl_s)
end
return reply
