-- Replace an entry by a versioned tombstone: a delete at home, or an event
-- telling this region that a newer version exists. An older fill can never
-- install over it, because every install compares versions first.
-- KEYS[1] entry hash
-- ARGV[1] tombstone lifetime in ms   ARGV[2] version, '' to assign one
-- Returns {1, version} or {0, current} when the held version is not older.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cur = tonumber(redis.call('HGET', KEYS[1], 'ver')) or 0
local ver
if ARGV[2] ~= '' then
  ver = tonumber(ARGV[2])
  if ver <= cur then return {0, cur} end
else
  ver = math.max(cur + 1, now)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'ver', string.format('%d', ver), 'tomb', '1',
  'ts', string.format('%d', math.floor(now / 1000)))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return {1, ver}
