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
-- Returns {1, calls_1, usd_1, tokens_1, calls_2, ...}: usage including this call when
--         reserving, as it stands when only checking; or
--         {0, i, unit}: budget i would be exceeded in unit "calls"|"usd_micros"|"tokens".
local reserve = ARGV[1] == "1"
local cost = {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
local units = {"calls", "usd_micros", "tokens"}
local reply = {1}
for i = 1, #KEYS do
  local base = 4 + 4 * (i - 1)
  local used = redis.call("HMGET", KEYS[i], units[1], units[2], units[3])
  for u = 1, 3 do
    local limit = tonumber(ARGV[base + u])
    local now_used = tonumber(used[u]) or 0
    if limit >= 0 and now_used + cost[u] > limit then
      return {0, i, units[u]}
    end
    -- usage as reported: with this call when it is reserved, without it otherwise
    reply[#reply + 1] = reserve and now_used + cost[u] or now_used
  end
end
if reserve then
  for i = 1, #KEYS do
    for u = 1, 3 do
      if cost[u] ~= 0 then
        redis.call("HINCRBY", KEYS[i], units[u], cost[u])
      end
    end
    redis.call("EXPIRE", KEYS[i], tonumber(ARGV[4 + 4 * (i - 1) + 4]))
  end
end
return reply
