-- Install a copy made elsewhere (a remote fill from the home region, or a
-- replicated value carried by an event) only if nothing newer is known here.
-- An equal version installs only where this region holds no copy of it: a
-- 'superseded' marker or negative entry of that version, or nothing (evicted or expired).
-- This comparison is what closes the stale-set race of architecture.md.
-- KEYS[1] entry hash   KEYS[2] bucket digest   KEYS[3] the entry's lease   KEYS[4] leaf index
-- ARGV[1] value  ARGV[2] content type  ARGV[3] version  ARGV[4] written ms
-- ARGV[5] expires ms (absolute)  ARGV[6] ms to keep past expiry
-- ARGV[7] generation  ARGV[8] tags  ARGV[9] tag versions
-- ARGV[10] the key   ARGV[11] its leaf
-- Returns {1, version} or {0, current[, 'invalid']}.
local ver, written, exp = whole(ARGV[3], 0), whole(ARGV[4], 0), whole(ARGV[5], 1)
local keep, gen = whole(ARGV[6], 0), whole(ARGV[7], 0)
if ver == nil or written == nil or exp == nil or keep == nil or gen == nil
    or exp + keep > MAX_VERSION then
  return {0, 0, 'invalid'}
end
local held = redis.call('HMGET', KEYS[1], 'ver', 'tomb')
local cur = math.max(tonumber(held[1]) or 0, applied_version(ARGV[10]))
if ver < cur then return {0, cur} end
if ver == cur and tonumber(held[1]) == ver and held[2] ~= 'm' and held[2] ~= 'n' then
  return {0, cur}
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if exp <= now_ms then return {0, cur} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'ct', ARGV[2], 'ver', string.format('%d', ver),
  'ts', string.format('%d', written), 'exp', string.format('%d', exp),
  'gen', string.format('%d', gen), 'tg', ARGV[8], 'tv', ARGV[9])
redis.call('PEXPIREAT', KEYS[1], string.format('%d', exp + keep))
if ver > 0 then record_applied(ARGV[10], ARGV[11], ver) end
-- any change of the entry revokes an origin fill in flight (its install will be refused)
redis.call('DEL', KEYS[3])
return {1, ver}
