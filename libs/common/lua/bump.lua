-- Raise a namespace generation ('gen') or a tag version ('t:<tag>'): O(1)
-- invalidation of every entry stamped with an older one.
-- KEYS[1] namespace meta hash
-- ARGV[1] field   ARGV[2] version, '' to assign max(current + 1, now_us)
-- Returns {1, version} or {0, current[, 'exhausted'|'invalid']} when nothing changed.
local MAX_VERSION = 9007199254740991
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
local ver
if ARGV[2] ~= '' then
  ver = tonumber(ARGV[2])
  if ver == nil or ver ~= math.floor(ver) or ver < 1 or ver > MAX_VERSION then
    return {0, cur, 'invalid'}
  end
  if ver <= cur then return {0, cur} end
else
  ver = math.max(cur + 1, now)
  if ver > MAX_VERSION then return {0, cur, 'exhausted'} end
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', ver))
return {1, ver}
