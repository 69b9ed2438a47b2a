-- Replace an entry by a versioned tombstone. Two kinds:
--   '1' deleted: a delete at home, or a delete event;
--   'm' superseded: an event said a newer version exists, this region holds no copy of it.
-- An older fill can never install over either, because every install compares versions.
-- A deletion keeps the namespace generation it was made under (ARGV[6]), so a namespace
-- invalidation after it lets the key be filled again (from the origin, which may have a
-- row again); a superseded marker always sends reads to the home region.
-- KEYS[1] entry hash   KEYS[2] bucket digest   KEYS[3] the entry's lease   KEYS[4] leaf index
-- ARGV[1] tombstone lifetime in ms   ARGV[2] version, '' to assign one   ARGV[3] kind
-- ARGV[4] the key   ARGV[5] its leaf   ARGV[6] namespace generation ('' for none)
-- Returns {1, version} or {0, current[, 'exhausted'|'invalid']} when nothing changed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local life = whole(ARGV[1], 1)
if life == nil or (ARGV[6] ~= '' and whole(ARGV[6], 0) == nil) then
  return {0, 0, 'invalid'}
end
local cur = math.max(tonumber(redis.call('HGET', KEYS[1], 'ver')) or 0,
  applied_version(ARGV[4]))
local ver
if ARGV[2] ~= '' then
  ver = whole(ARGV[2], 1)
  if ver == nil then return {0, cur, 'invalid'} end
  if ver <= cur then return {0, cur} end
else
  ver = math.max(cur + 1, now)
  if ver > MAX_VERSION then return {0, cur, 'exhausted'} end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'ver', string.format('%d', ver), 'tomb', ARGV[3],
  'ts', string.format('%d', math.floor(now / 1000)))
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'gen', ARGV[6]) end
redis.call('PEXPIRE', KEYS[1], string.format('%d', life))
record_applied(ARGV[4], ARGV[5], ver)
-- any change of the entry revokes an origin fill in flight (its install will be refused)
redis.call('DEL', KEYS[3])
return {1, ver}
