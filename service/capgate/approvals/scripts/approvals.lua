-- Shared prelude of the approval scripts (and of authorize.lua, which creates and
-- consumes approvals in the same atomic step as the budgets). Sent after common.lua.
--
-- Approval record (a hash, one per approval, key T:appr:r:<id>), fields:
--   i  approval id              j  the sidecar's JSON of the immutable fields, opaque
--   s  state: pending | approved | rejected | expired | consumed
--   r  requester principal id   o  the user it acts for ("" if none)
--   a  action hash (hex SHA-256) a retry must match
--   R  approver roles (JSON array)   q  approvals needed (quorum)
--   v  votes (JSON array of {principal_id, roles, verdict, comment, time_ms})
--   c  decision id that consumed it ("" until then)
--   t  created, e expires, u updated: milliseconds since the epoch (Redis TIME)
--   p  the pending-index key that points at it while it is pending
-- Tenant keys beside the records (T = capgate:{<tenant>}):
--   T:appr:index    zset: every approval record key, score = created ms
--   T:appr:expiry   zset: record keys that can still expire, score = expiry ms
--   T:appr:log      stream: one entry per transition (WatchApprovals reads it)

-- Records, the index and the log are kept this long after an approval is settled.
local APPROVAL_KEEP_SECONDS = 86400
local APPROVAL_LOG_MAX = 10000
local SWEEP_BATCH = 100
local SNAPSHOT_FIELDS = {"i", "j", "s", "v", "c", "t", "e", "u"}

-- The record's fields for a reply or a log entry, as a flat {name, value, ...} list.
local function snapshot(record)
  local values = redis.call("HMGET", record, unpack(SNAPSHOT_FIELDS))
  local flat = {}
  for n, name in ipairs(SNAPSHOT_FIELDS) do
    flat[#flat + 1] = name
    flat[#flat + 1] = values[n] or ""
  end
  return flat
end

-- Append a transition of record (from state prev, caused by actor) to the log.
local function log_transition(log, record, prev, actor)
  local entry = snapshot(record)
  entry[#entry + 1] = "prev"
  entry[#entry + 1] = prev
  entry[#entry + 1] = "actor"
  entry[#entry + 1] = actor
  redis.call("XADD", log, "MAXLEN", "~", APPROVAL_LOG_MAX, "*", unpack(entry))
  redis.call("EXPIRE", log, APPROVAL_KEEP_SECONDS)
end

-- Move record to state (from prev), remember it as settled, log it.
local function transition(record, prev, state, now_ms, log, expiry, actor, extra)
  redis.call("HSET", record, "s", state, "u", now_ms)
  if extra then redis.call("HSET", record, unpack(extra)) end
  if state ~= "pending" then
    local pending = redis.call("HGET", record, "p")
    if pending and redis.call("GET", pending) == record then redis.call("DEL", pending) end
  end
  if state ~= "pending" and state ~= "approved" then
    redis.call("ZREM", expiry, record)
    redis.call("EXPIRE", record, APPROVAL_KEEP_SECONDS)
  end
  log_transition(log, record, prev, actor)
end

-- Expire record if it is pending or approved (unused) and past its expiry.
-- Returns the approval id when it expired now, else nil.
local function expire_if_due(record, now_ms, log, expiry)
  local r = redis.call("HMGET", record, "s", "e", "i")
  if (r[1] == "pending" or r[1] == "approved") and tonumber(r[2]) <= now_ms then
    transition(record, r[1], "expired", now_ms, log, expiry, "")
    return r[3]
  end
  return nil
end

-- Expire up to SWEEP_BATCH due approvals of the tenant; returns their ids.
local function sweep_approvals(expiry, now_ms, log)
  local due = redis.call("ZRANGEBYSCORE", expiry, "-inf", now_ms, "LIMIT", 0, SWEEP_BATCH)
  local expired = {}
  for _, record in ipairs(due) do
    local id = expire_if_due(record, now_ms, log, expiry)
    if id then expired[#expired + 1] = id end
    redis.call("ZREM", expiry, record)
  end
  return expired
end

-- The log's last entry id, "0-0" when it is empty: where a watcher resumes.
local function log_head(log)
  local last = redis.call("XREVRANGE", log, "+", "-", "COUNT", 1)
  if #last == 0 then return "0-0" end
  return last[1][1]
end
