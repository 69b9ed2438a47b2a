-- Install what the namespace's origin answered, only if this fill still holds
-- the entry's lease: any write, delete, event or remote fill of the entry
-- revoked it (DEL), so a fill that raced a change can never install the value
-- it fetched before the change (the stale-set race, for origins without versions).
-- KEYS[1] entry hash   KEYS[2] bucket digest   KEYS[3] the entry's lease   KEYS[4] leaf index
-- ARGV[1] lease token   ARGV[2] value   ARGV[3] content type
-- ARGV[4] origin version, '' to assign one   ARGV[5] ttl in ms
-- ARGV[6] ms to keep past expiry   ARGV[7] namespace generation read before the fetch
-- ARGV[8] the key   ARGV[9] its leaf
-- ARGV[10] '1' for an origin 404: a negative entry of ARGV[5] ms
-- Returns {1, version, written_ms, expires_ms} or {0, 'revoked'|'stale', current}.
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {0, 'revoked', 0} end
redis.call('DEL', KEYS[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local held = redis.call('HMGET', KEYS[1], 'ver', 'tomb')
local cur = math.max(tonumber(held[1]) or 0, applied_version(ARGV[8]))
if ARGV[10] == '1' then
  -- remembered absence: no version of its own, it only answers reads until it expires
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'ver', string.format('%d', cur), 'tomb', 'n',
    'ts', string.format('%d', now_ms))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
  return {1, cur, now_ms, now_ms + tonumber(ARGV[5])}
end
local ver
if ARGV[4] ~= '' then
  ver = tonumber(ARGV[4])
  -- the same version again (a refresh of an unchanged object) renews its TTL: the
  -- lease proves nothing changed since the fetch began; only a delete refuses it
  if ver < cur or (ver == cur and tonumber(held[1]) == ver and held[2] == '1') then
    return {0, 'stale', cur}
  end
else
  ver = math.max(cur + 1, now)
end
local exp = now_ms + tonumber(ARGV[5])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'ct', ARGV[3], 'ver', string.format('%d', ver),
  'ts', string.format('%d', now_ms), 'exp', string.format('%d', exp), 'gen', ARGV[7],
  'tg', '', 'tv', '')
redis.call('PEXPIREAT', KEYS[1], exp + tonumber(ARGV[6]))
record_applied(ARGV[8], ARGV[9], ver)
return {1, ver, now_ms, exp}
