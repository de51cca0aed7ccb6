-- KEYS: stream, delayed, leases. ARGV: group, now (ms). Returns `{running, first undelivered
-- entry id or '', first delayed score or ''}`.
local stream, delayed, group = KEYS[1], KEYS[2], ARGV[1]
local running = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf')
local last = '0-0'
local groups = redis.pcall('XINFO', 'GROUPS', stream)
if type(groups) == 'table' and not groups.err then
  for _, g in ipairs(groups) do
    if field(g, 'name') == group then last = field(g, 'last-delivered-id') or '0-0' end
  end
end
local first = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', 1)
local oldest = ''
if #first > 0 then oldest = first[1][1] end
local d = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
return {running, oldest, d[2] or ''}
