-- KEYS: markers. ARGV: TTL, refresh below (s). Returns, per marker, 1 if it exists (refreshing
-- its TTL when it would expire soon) or 0.
local out = {}
for i, key in ipairs(KEYS) do
  local ttl = redis.call('TTL', key)
  if ttl == -2 then
    out[i] = 0
  else
    out[i] = 1
    if ttl >= 0 and ttl < tonumber(ARGV[2]) then redis.call('EXPIRE', key, ARGV[1]) end
  end
end
return out
