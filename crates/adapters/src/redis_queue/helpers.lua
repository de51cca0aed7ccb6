-- Lua shared by the scripts: a stream entry's field, and whether an entry is still held by a
-- reservation (pending for this consumer, and its attempt still the latest).
local function field(fields, name)
  if type(fields) ~= 'table' then return false end
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return false
end
local function held(stream, attempts, group, consumer, entry, job, attempt)
  local p = redis.pcall('XPENDING', stream, group, entry, entry, 1, consumer)
  if type(p) ~= 'table' or p.err or #p == 0 then return false end
  return redis.call('HGET', attempts, job) == attempt
end
local function payload_of(stream, entry)
  local e = redis.call('XRANGE', stream, entry, entry)
  if #e == 0 then return '' end
  return field(e[1][2], 'payload') or ''
end
