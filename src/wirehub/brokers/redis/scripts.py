"""The Lua scripts of the Redis broker (each runs atomically on the server)."""

from __future__ import annotations

__all__ = ["DELETE_IF_SCRIPT", "PUBLISH_SCRIPT", "SET_MAX_SCRIPT"]

# One call publishes a batch: every publish of one loop pass on this node, in
# groups of consecutive publishes to one room (the room's keys and bounds are
# sent once per group, not once per message: redis-py packs each argument in
# Python, ~1.5 µs apiece, more than the rest of a publish's client side).
# ARGV[1]: this node's id. Then per group, KEYS: offset, stream, then one
# idempotency key per message ('' for none); ARGV: message count, maxlen, ttl
# ms, channel, idempotency window ms, then two per message: frame head (ends
# with '"offset":') and exclude ('' for none). Returns one answer per publish,
# in order: the new offset, or minus the first offset when its idempotency key
# is already there (nothing published): the check and the INCR are one atomic
# step, so racing nodes make one message. Each room's messages of the batch
# leave in one PUBLISH, a ``Z`` line (wire.py): one pub/sub message per room
# and batch, not per message.
PUBLISH_SCRIPT = """
local node = ARGV[1]
local answers, lines, channels = {}, {}, {}
local now
local a, k = 2, 1
while a <= #ARGV do
  local n, maxlen, ttl = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local channel, idem_ms = ARGV[a + 3], ARGV[a + 4]
  local offset_key, stream = KEYS[k], KEYS[k + 1]
  a, k = a + 5, k + 2
  for _ = 1, n do
    local head, x, idem = ARGV[a], ARGV[a + 1], KEYS[k]
    a, k = a + 2, k + 1
    local first = false
    if idem ~= '' then first = redis.call('GET', idem) end
    if first then
      answers[#answers + 1] = -tonumber(first)
    else
      local off = redis.call('INCR', offset_key)
      if idem ~= '' then redis.call('SET', idem, off, 'PX', idem_ms) end
      local frame = head .. off .. '}'
      if maxlen > 0 then
        if not now then
          local t = redis.call('TIME')
          now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        end
        local cutoff = now - ttl
        redis.pcall('XADD', stream, 'MAXLEN', maxlen, off .. '-0', 't', now, 'x', x, 'f', frame)
        local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
        if oldest and tonumber(oldest[2][2]) < cutoff then
          local keep = off .. '-0'
          for _, e in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', 256)) do
            if tonumber(e[2][2]) >= cutoff then keep = e[1]; break end
          end
          redis.call('XTRIM', stream, 'MINID', keep)
        end
        redis.call('PEXPIRE', stream, ttl)
      end
      local recs = lines[channel]
      if not recs then
        recs = {}
        lines[channel] = recs
        channels[#channels + 1] = channel
      end
      recs[#recs + 1] = x .. '\\t' .. off .. '\\t' .. #frame .. '\\t' .. frame
      answers[#answers + 1] = off
    end
  end
end
for _, channel in ipairs(channels) do
  redis.call('PUBLISH', channel, 'Z\\t' .. node .. '\\t' .. table.concat(lines[channel]))
end
return answers
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
