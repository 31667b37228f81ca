-- Read approvals of one tenant, expiring the due ones first (so a reader never sees
-- a stale PENDING, and the EXPIRED transition is logged once).
--
-- KEYS[1] the approval log, KEYS[2] the expiry zset, KEYS[3] the index zset,
-- KEYS[4] the approval record (ARGV[1] = "get") or unused
-- ARGV[1] "get" | "list"
-- list: ARGV[2] state filter ("" = all), ARGV[3] page size, ARGV[4] cursor: the
--   created-ms score and record key to continue after ("" = from the newest),
--   as "<score> <key>"; at most SCAN_LIMIT index entries are read per call.
--
-- Replies:
--   get:  {"ok", expired_ids, snapshot...} | {"missing", expired_ids}
--   list: {"ok", expired_ids, next_cursor, log_head, n, snapshot_1 (16 values)...}
local SCAN_LIMIT = 1000
local now_ms = floor(now_micros() / 1000)
local log, expiry, index = KEYS[1], KEYS[2], KEYS[3]
local expired = sweep_approvals(expiry, now_ms, log)

if ARGV[1] == "get" then
  local record = KEYS[4]
  if redis.call("EXISTS", record) == 0 then return {"missing", cjson.encode(expired)} end
  local id = expire_if_due(record, now_ms, log, expiry)
  if id then expired[#expired + 1] = id end
  local reply = {"ok", cjson.encode(expired)}
  for _, v in ipairs(snapshot(record)) do reply[#reply + 1] = v end
  return reply
end

local want, page_size = ARGV[2], tonumber(ARGV[3])
redis.call("ZREMRANGEBYSCORE", index, "-inf", now_ms - APPROVAL_KEEP_SECONDS * 2000)
local max, after = "+inf", nil
if ARGV[4] ~= "" then
  local score, key = string.match(ARGV[4], "^(%d+) (.+)$")
  max, after = score, key
end
local entries = redis.call("ZREVRANGEBYSCORE", index, max, "-inf", "WITHSCORES", "LIMIT", 0,
  SCAN_LIMIT)
local found, next_cursor, skipping = {}, "", after ~= nil
local scanned = 0
for n = 1, #entries, 2 do
  local record, score = entries[n], entries[n + 1]
  scanned = scanned + 1
  local sent = false
  if skipping then
    -- entries with the cursor's score, up to and including its key, were sent
    if score ~= max then
      skipping = false
    else
      sent = true
      if record == after then skipping = false end
    end
  end
  if not sent then
    if #found == page_size then break end
    if redis.call("EXISTS", record) == 1 then
      local id = expire_if_due(record, now_ms, log, expiry)
      if id then expired[#expired + 1] = id end
      if want == "" or redis.call("HGET", record, "s") == want then
        found[#found + 1] = record
      end
    end
    next_cursor = score .. " " .. record
  end
end
if #found < page_size and scanned < SCAN_LIMIT then next_cursor = "" end
local reply = {"ok", cjson.encode(expired), next_cursor, log_head(log), #found}
for _, record in ipairs(found) do
  for _, v in ipairs(snapshot(record)) do reply[#reply + 1] = v end
end
return reply
