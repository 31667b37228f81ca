-- Check, and optionally reserve, every budget of one decision, atomically.
-- All or nothing: if any budget would be exceeded, nothing is written.
--
-- KEYS[i]    usage hash of budget i (fields calls, usd_micros, tokens)
-- ARGV[1]    1 to reserve, 0 to check only (dry run, or before an approval)
-- ARGV[2]    call cost (1 per tool call)
-- ARGV[3]    estimated usd_micros of this call
-- ARGV[4]    estimated tokens of this call
-- then for each budget i, 4 values at ARGV[4 + 4*(i-1) + 1 ..]:
--            limit_calls, limit_usd_micros, limit_tokens (-1 = no limit), ttl_seconds
--
-- Returns {1, calls_1, usd_1, tokens_1, calls_2, ...}: usage after this call, or
--         {0, i, unit}: budget i would be exceeded in unit "calls"|"usd_micros"|"tokens".
local reserve = ARGV[1] == "1"
local cost = {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
local units = {"calls", "usd_micros", "tokens"}
local after = {}
for i = 1, #KEYS do
  local base = 4 + 4 * (i - 1)
  local used = redis.call("HMGET", KEYS[i], units[1], units[2], units[3])
  for u = 1, 3 do
    local limit = tonumber(ARGV[base + u])
    local next_value = (tonumber(used[u]) or 0) + cost[u]
    if limit >= 0 and next_value > limit then
      return {0, i, units[u]}
    end
    after[#after + 1] = next_value
  end
end
if reserve then
  for i = 1, #KEYS do
    local ttl = tonumber(ARGV[4 + 4 * (i - 1) + 4])
    for u = 1, 3 do
      if cost[u] ~= 0 then
        redis.call("HINCRBY", KEYS[i], units[u], cost[u])
      end
    end
    redis.call("EXPIRE", KEYS[i], ttl)
  end
  local reply = {1}
  for _, v in ipairs(after) do reply[#reply + 1] = v end
  return reply
end
-- Check only: report usage as it stands, without this call.
local reply = {1}
for i, v in ipairs(after) do reply[#reply + 1] = v - cost[((i - 1) % 3) + 1] end
return reply
