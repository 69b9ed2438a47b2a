-- The stamps an entry is written under: the namespace generation and the current
-- versions of its tags ('0' where never invalidated).
-- With ARGV[1] = '1' each stamp is at least this Redis's clock minus one microsecond:
-- every generation and tag version this Redis assigned before now is older, and every
-- one it assigns from now on is newer (bump.lua takes max(current + 1, now)), so an
-- entry written after an acknowledged invalidation survives it even when this Redis
-- lost its metadata since (an empty restart, an older snapshot); ARGV[1] = '' gives the
-- stored values alone (a tombstone: stamped too low it only sends reads to the source).
-- KEYS[1] namespace meta hash   ARGV[2...] tags
-- Returns {generation, tag version...} as strings.
local floor = 0
if ARGV[1] == '1' then
  local t = redis.call('TIME')
  floor = tonumber(t[1]) * 1000000 + tonumber(t[2]) - 1
end
local function stamp(field)
  return string.format('%d', math.max(tonumber(redis.call('HGET', KEYS[1], field)) or 0, floor))
end
local out = {stamp('gen')}
for i = 2, #ARGV do
  out[i] = stamp('t:' .. ARGV[i])
end
return out
