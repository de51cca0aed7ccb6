-- KEYS: stream, delayed, attempts, leases. ARGV: group, consumer, now (ms), lease end (ms),
-- max, promote limit. Returns `{{newest entry id, first delayed score, first lease end},
-- {{entry, job id, payload, attempt}, ...}}`.
local stream, delayed, attempts, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, consumer, now, lease_end = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max = tonumber(ARGV[5])
redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
for _, member in ipairs(due) do
  redis.call('ZREM', delayed, member)
  local ok, job = pcall(cjson.decode, member)
  if ok and type(job) == 'table' and job.id then
    redis.call('XADD', stream, '*', 'id', tostring(job.id), 'payload', tostring(job.payload or ''))
  else
    redis.log(redis.LOG_WARNING, 'lazona: undecodable delayed job dropped: ' .. member)
  end
end
local got = {}
local function take(entry)
  local id, fields = entry[1], entry[2]
  if type(fields) ~= 'table' then
    redis.call('XACK', stream, group, id)
    redis.call('ZREM', leases, id)
    return
  end
  local job = field(fields, 'id')
  local attempt = 0
  if job then
    attempt = redis.call('HINCRBY', attempts, job, 1)
    redis.call('ZADD', leases, lease_end, id)
  end
  got[#got + 1] = {id, job or '', field(fields, 'payload') or '', attempt}
end
local ended = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, max)
for _, entry in ipairs(ended) do
  local c = redis.call('XCLAIM', stream, group, consumer, 0, entry)
  if type(c[1]) == 'table' then
    take(c[1])
  else
    redis.call('ZREM', leases, entry)
  end
end
if #got < max then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', max - #got,
    'STREAMS', stream, '>')
  if r then
    for _, e in ipairs(r[1][2]) do take(e) end
  end
end
local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local newest_id = '0-0'
if #newest > 0 then newest_id = newest[1][1] end
local d = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local l = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
return {{newest_id, d[2] or '', l[2] or ''}, got}
