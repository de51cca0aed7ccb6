-- KEYS: stream. ARGV: group, this consumer, idle (ms). Deletes the other consumers idle that
-- long with nothing pending. Returns how many.
local r = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(r) ~= 'table' or r.err then return 0 end
local n = 0
for _, c in ipairs(r) do
  local name = field(c, 'name')
  if name and name ~= ARGV[2] and field(c, 'pending') == 0
      and (field(c, 'idle') or 0) >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    n = n + 1
  end
end
return n
