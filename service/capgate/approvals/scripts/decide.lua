-- Record one approver's verdict on an approval, atomically (DESIGN §7).
--
-- KEYS[1] the approval record, KEYS[2] the tenant's approval log (stream),
-- KEYS[3] the tenant's expiry zset
-- ARGV[1] approver principal id, ARGV[2] approver roles (JSON array),
-- ARGV[3] verdict: approve | reject, ARGV[4] comment
--
-- Rules: the approval must be pending and unexpired; the approver may be neither
-- the requester nor the user it acts for, must hold one of the approver roles, and
-- counts once (a second verdict changes nothing). Any reject → rejected; the quorum
-- of approvals reached → approved.
--
-- Replies:
--   {"ok", changed, expired_ids, snapshot...}  changed: "1" if the state changed,
--       "0" for a vote short of the quorum, "repeat" for an approver who voted before
--   {"missing", expired_ids}                    no such approval in this tenant
--   {"state", state, expired_ids}               no longer pending (state says why)
--   {"self", expired_ids}                       the approver is the requester or its user
--   {"role", expired_ids}                       the approver holds no approver role
local now_ms = floor(now_micros() / 1000)
local record, log, expiry = KEYS[1], KEYS[2], KEYS[3]
local approver, verdict = ARGV[1], ARGV[3]
local expired = sweep_approvals(expiry, now_ms, log)
local function with_expired(reply)
  reply[#reply + 1] = cjson.encode(expired)
  return reply
end

if redis.call("EXISTS", record) == 0 then return with_expired({"missing"}) end
local id = expire_if_due(record, now_ms, log, expiry)
if id then expired[#expired + 1] = id end
local r = redis.call("HMGET", record, "s", "r", "o", "R", "q", "v")
if r[1] ~= "pending" then return with_expired({"state", r[1]}) end
if approver == r[2] or (r[3] ~= "" and approver == r[3]) then return with_expired({"self"}) end

local roles = cjson.decode(ARGV[2])
local wanted, held = {}, false
for _, role in ipairs(cjson.decode(r[4])) do wanted[role] = true end
for _, role in ipairs(roles) do if wanted[role] then held = true end end
if not held then return with_expired({"role"}) end

local votes = cjson.decode(r[6])
for _, vote in ipairs(votes) do
  if vote.principal_id == approver then
    local reply = {"ok", "repeat"}
    with_expired(reply)
    for _, v in ipairs(snapshot(record)) do reply[#reply + 1] = v end
    return reply
  end
end
votes[#votes + 1] = {principal_id = approver, roles = roles, verdict = verdict,
  comment = ARGV[4], time_ms = now_ms}
local approvals = 0
for _, vote in ipairs(votes) do
  if vote.verdict == "approve" then approvals = approvals + 1 end
end
local state = "pending"
if verdict == "reject" then
  state = "rejected"
elseif approvals >= tonumber(r[5]) then
  state = "approved"
end
-- cjson encodes an empty table as {}; votes is never empty here.
transition(record, "pending", state, now_ms, log, expiry, approver, {"v", cjson.encode(votes)})
local reply = {"ok", state ~= "pending" and "1" or "0"}
with_expired(reply)
for _, v in ipairs(snapshot(record)) do reply[#reply + 1] = v end
return reply
