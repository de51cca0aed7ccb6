-- KEYS: stream, attempts, delayed, leases, marker. ARGV: group, consumer, entry, job id, attempt,
-- due (ms), error, marker TTL. Returns 1, or 0 when the job is no longer held.
local stream, attempts = KEYS[1], KEYS[2]
local group, consumer, entry, job, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not held(stream, attempts, group, consumer, entry, job, attempt) then return 0 end
local payload = payload_of(stream, entry)
redis.call('XACK', stream, group, entry)
redis.call('XDEL', stream, entry)
local member = cjson.encode({id = job, payload = payload, attempts = tonumber(attempt),
  error = ARGV[7]})
redis.call('ZADD', KEYS[3], ARGV[6], member)
redis.call('ZREM', KEYS[4], entry)
redis.call('EXPIRE', KEYS[5], ARGV[8])
return 1
