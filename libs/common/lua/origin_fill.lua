-- Install what the namespace's origin answered, only if this fill still holds the
-- entry's lease: any write, delete, event or remote fill of the entry revoked it
-- (DEL), so a fill that raced a change can never install the value it fetched
-- before the change (the stale-set race, for origins without versions).
-- Only the home region runs it (a region that is not the key's home asks the home).
-- The version it installs under depends on who assigns the namespace's versions:
--   home    the origin's version when newer than anything known here, else this
--           region assigns max(current + 1, now_us), like a write;
--   source  (a system of record assigns them) the origin's version, refused when
--           older than what is known here; without one, the version known here, never
--           above it, so any later change event of the record replaces it.
-- KEYS[1] entry hash   KEYS[2] bucket digest   KEYS[3] the entry's lease   KEYS[4] leaf index
-- ARGV[1] lease token   ARGV[2] value   ARGV[3] content type
-- ARGV[4] origin version, '' for none   ARGV[5] ttl in ms
-- ARGV[6] ms to keep past expiry   ARGV[7] namespace generation read before the fetch
-- ARGV[8] the key   ARGV[9] its leaf
-- ARGV[10] '1' for an origin 404: a negative entry of ARGV[5] ms
-- ARGV[11] 'source' when a system of record assigns the namespace's versions, else ''
-- Returns {1, version, written_ms, expires_ms}
-- or {0, 'revoked'|'stale'|'exhausted'|'invalid', current}.
local ttl, keep, gen = whole(ARGV[5], 1), whole(ARGV[6], 0), whole(ARGV[7], 0)
local theirs = nil
if ARGV[4] ~= '' then theirs = whole(ARGV[4], 1) end
if ttl == nil or keep == nil or gen == nil or (ARGV[4] ~= '' and theirs == nil) then
  return {0, 'invalid', 0}
end
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {0, 'revoked', 0} end
-- the lease is spent by this attempt whatever it installs
redis.call('DEL', KEYS[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
if now_ms + ttl + keep > MAX_VERSION then return {0, 'invalid', 0} end
local held = redis.call('HMGET', KEYS[1], 'ver', 'tomb')
local cur = math.max(tonumber(held[1]) or 0, applied_version(ARGV[8]))
if ARGV[10] == '1' then
  -- remembered absence: no version of its own, it only answers reads until it expires
  -- (or its namespace is invalidated)
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'ver', string.format('%d', cur), 'tomb', 'n',
    'ts', string.format('%d', now_ms), 'gen', string.format('%d', gen))
  redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
  return {1, cur, now_ms, now_ms + ttl}
end
-- the same version again (a refresh of an unchanged object) renews its TTL: the lease
-- proves nothing changed since the fetch began; only a delete of that version refuses it
local same_deleted = tonumber(held[1]) == cur and held[2] == '1'
local ver
if ARGV[11] == 'source' then
  ver = theirs or cur
  if ver < cur or (ver == cur and same_deleted) then return {0, 'stale', cur} end
elseif theirs ~= nil and (theirs > cur or (theirs == cur and not same_deleted)) then
  ver = theirs
else
  ver = math.max(cur + 1, now)
  if ver > MAX_VERSION then return {0, 'exhausted', cur} end
end
local exp = now_ms + ttl
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'ct', ARGV[3], 'ver', string.format('%d', ver),
  'ts', string.format('%d', now_ms), 'exp', string.format('%d', exp),
  'gen', string.format('%d', gen), 'tg', '', 'tv', '')
redis.call('PEXPIREAT', KEYS[1], string.format('%d', exp + keep))
if ver > 0 then record_applied(ARGV[8], ARGV[9], ver) end
return {1, ver, now_ms, exp}
