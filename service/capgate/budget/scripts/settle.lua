-- Settle one reservation, atomically: release its reserved estimate and, for
-- SUCCEEDED and REVERTED, commit the actual cost (an overrun is recorded, never
-- refused); ABANDONED also gives the call back (the tool never ran). Idempotent:
-- a second Settle returns what the first one did.
--
-- KEYS[1]  the tenant's open-reservation zset, KEYS[2] the reservation record
-- ARGV[1]  outcome: succeeded | failed | reverted | abandoned
-- ARGV[2]  "1" when the actual cost is given; else the estimate is committed
-- ARGV[3]  actual usd_micros, ARGV[4] actual tokens
--
-- Replies:
--   {"ok", released, metadata, summary}   summary: CSV of previous_state ("reserved",
--      or "expired": released already, the cost is still committed), committed
--      usd_micros, committed tokens, estimated usd_micros, estimated tokens, settlement
--      time (Redis TIME, microseconds), then 5 usage values (USAGE_FIELDS order) per
--      budget, in budget order
--   {"settled", released, outcome, metadata, summary}   settled before: the first
--      settlement's summary
--   {"missing", released}       no reservation with this id in this tenant
-- released: expired reservations of the tenant this call released first
local outcome = ARGV[1]
local now_us = now_micros()
local released = purge_expired(KEYS[1], floor(now_us / 1000))

local r = redis.call("HMGET", KEYS[2], "s", "u", "t", "c", "k", "m", "o")
if not r[1] then return {"missing", released} end
if r[1] ~= "reserved" and r[1] ~= "expired" then return {"settled", released, r[1], r[6], r[7]} end

local held = r[1] == "reserved"
local spend = outcome == "succeeded" or outcome == "reverted"
local usd, tokens = tonumber(r[2]), tonumber(r[3])
if ARGV[2] == "1" then usd, tokens = tonumber(ARGV[3]), tonumber(ARGV[4]) end
if not spend then usd, tokens = 0, 0 end

local summary = {r[1], string.format("%d", usd), string.format("%d", tokens), r[2], r[3],
  string.format("%d", now_us)}
local budget_keys = split_lines(r[5])
for _, key in ipairs(distinct(budget_keys)) do
  if redis.call("EXISTS", key) == 1 then
    if held then
      add(key, "reserved_usd_micros", -tonumber(r[2]))
      add(key, "reserved_tokens", -tonumber(r[3]))
    end
    add(key, "spent_usd_micros", usd)
    add(key, "spent_tokens", tokens)
    if outcome == "abandoned" then add(key, "calls", -tonumber(r[4])) end
  end
end
for _, key in ipairs(budget_keys) do
  for _, value in ipairs(usage_of(key)) do summary[#summary + 1] = string.format("%d", value) end
end
redis.call("ZREM", KEYS[1], KEYS[2])
local csv = table.concat(summary, ",")
redis.call("HSET", KEYS[2], "s", outcome, "o", csv)
redis.call("EXPIRE", KEYS[2], SETTLED_KEEP_SECONDS)
return {"ok", released, r[6], csv}
