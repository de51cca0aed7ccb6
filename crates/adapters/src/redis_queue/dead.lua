-- KEYS: stream, attempts, leases, marker. ARGV: group, consumer, entry, job id, attempt. Drops
-- the job (its row in SQL is the dead letter). Returns 1, or 0 when the job is no longer held.
local stream, attempts = KEYS[1], KEYS[2]
local group, consumer, entry, job, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not held(stream, attempts, group, consumer, entry, job, attempt) then return 0 end
redis.call('XACK', stream, group, entry)
redis.call('XDEL', stream, entry)
redis.call('HDEL', attempts, job)
redis.call('ZREM', KEYS[3], entry)
redis.call('DEL', KEYS[4])
return 1
