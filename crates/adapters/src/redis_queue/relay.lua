-- KEYS: stream, attempts, marker per row. ARGV: marker TTL, then per row id, payload,
-- attempts, created_at. Returns how many rows were added to the stream.
local added = 0
local rows = (#ARGV - 1) / 4
for i = 1, rows do
  local b = 1 + (i - 1) * 4
  local id, payload, att, stamp = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local marker = KEYS[2 + i]
  if redis.call('GET', marker) ~= stamp then
    redis.call('SET', marker, stamp, 'EX', ARGV[1])
    redis.call('XADD', KEYS[1], '*', 'id', id, 'payload', payload)
    if tonumber(att) > 0 then redis.call('HSET', KEYS[2], id, att) end
    added = added + 1
  end
end
return added
