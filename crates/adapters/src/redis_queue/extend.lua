-- KEYS: stream, attempts, leases. ARGV: group, consumer, lease end (ms), then per job entry,
-- job id, attempt. Moves the lease end of the entries still held. Returns how many.
local n = 0
for i = 4, #ARGV, 3 do
  if held(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[i], ARGV[i + 1], ARGV[i + 2]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    redis.call('ZADD', KEYS[3], ARGV[3], ARGV[i])
    n = n + 1
  end
end
return n
