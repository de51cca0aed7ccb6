-- KEYS: stream, attempts, leases, then the marker of each job. ARGV: group, consumer, then per
-- job entry, job id, attempt. Acknowledges and deletes the entries still held, and their
-- markers. Returns how many.
local n = 0
local k = 3
for i = 3, #ARGV, 3 do
  k = k + 1
  if held(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[i], ARGV[i + 1], ARGV[i + 2]) then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
    redis.call('ZREM', KEYS[3], ARGV[i])
    redis.call('DEL', KEYS[k])
    n = n + 1
  end
end
return n
