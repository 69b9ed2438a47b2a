-- Replace an entry by a versioned tombstone. Two kinds:
--   '1' deleted: a delete at home, or a delete event;
--   'm' superseded: an event said a newer version exists, this region holds no copy of it.
-- An older fill can never install over either, because every install compares versions.
-- KEYS[1] entry hash   KEYS[2] bucket digest   KEYS[3] the entry's lease   KEYS[4] leaf index
-- ARGV[1] tombstone lifetime in ms   ARGV[2] version, '' to assign one   ARGV[3] kind
-- ARGV[4] the key   ARGV[5] its leaf
-- Returns {1, version} or {0, current} when the held version is not older.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cur = math.max(tonumber(redis.call('HGET', KEYS[1], 'ver')) or 0,
  applied_version(ARGV[4]))
local ver
if ARGV[2] ~= '' then
  ver = tonumber(ARGV[2])
  if ver <= cur then return {0, cur} end
else
  ver = math.max(cur + 1, now)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'ver', string.format('%d', ver), 'tomb', ARGV[3],
  'ts', string.format('%d', math.floor(now / 1000)))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
record_applied(ARGV[4], ARGV[5], ver)
-- any change of the entry revokes an origin fill in flight (its install will be refused)
redis.call('DEL', KEYS[3])
return {1, ver}
