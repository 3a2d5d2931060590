"""The Lua scripts of the Redis broker (each runs atomically on the server)."""

from __future__ import annotations

__all__ = ["DELETE_IF_SCRIPT", "PUBLISH_SCRIPT", "SET_MAX_SCRIPT"]

# KEYS: offset, stream[, idempotency key]. ARGV: frame head (ends with
# '"offset":'), maxlen, ttl ms, the M line's prefix (wire.message_prefix),
# exclude, channel[, idempotency window ms]. Returns the new offset, or minus the
# first offset when the idempotency key is already there (nothing published):
# the check and the INCR are one atomic step, so racing nodes make one message.
PUBLISH_SCRIPT = """
local idem = KEYS[3]
if idem then
  local first = redis.call('GET', idem)
  if first then return -tonumber(first) end
end
local off = redis.call('INCR', KEYS[1])
if idem then redis.call('SET', idem, off, 'PX', ARGV[7]) end
local frame = ARGV[1] .. off .. '}'
local maxlen = tonumber(ARGV[2])
if maxlen > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local cutoff = now - tonumber(ARGV[3])
  redis.pcall('XADD', KEYS[2], 'MAXLEN', maxlen, off .. '-0', 't', now, 'x', ARGV[5], 'f', frame)
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if oldest and tonumber(oldest[2][2]) < cutoff then
    local keep = off .. '-0'
    for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 256)) do
      if tonumber(e[2][2]) >= cutoff then keep = e[1]; break end
    end
    redis.call('XTRIM', KEYS[2], 'MINID', keep)
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('PUBLISH', ARGV[6], ARGV[4] .. off .. '\\t' .. frame)
return off
"""

# Delete a hash field only if it still names this node (a client may have moved).
DELETE_IF_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

# Raise a counter to at least ARGV[1] (offsets after Redis lost its data).
SET_MAX_SCRIPT = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]); return tonumber(ARGV[1]) end
return cur
"""
