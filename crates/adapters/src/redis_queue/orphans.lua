-- KEYS: stream, leases. ARGV: group, idle (ms), now (ms). Gives a lease that has ended to the
-- entries pending that long with none recorded, so that the next reservation takes them over.
-- Returns how many.
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[2], '-', '+', 1000)
if type(p) ~= 'table' or p.err then return 0 end
local n = 0
for _, e in ipairs(p) do
  if not redis.call('ZSCORE', KEYS[2], e[1]) then
    redis.call('ZADD', KEYS[2], ARGV[3], e[1])
    n = n + 1
  end
end
return n
