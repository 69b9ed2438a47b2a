-- Versioned set of one entry (home region write).
-- KEYS[1] entry hash   KEYS[2] bucket digest   KEYS[3] the entry's lease   KEYS[4] leaf index
-- ARGV[1] value          ARGV[2] content type     ARGV[3] ttl in ms
-- ARGV[4] ms to keep the hash past its soft expiry (stale window)
-- ARGV[5] namespace generation at write   ARGV[6] tags "a,b"   ARGV[7] tag versions "3,9"
-- ARGV[8] external version, '' to assign one
-- ARGV[9] expected current raw version of the entry ('' = no condition, '0' = nothing held)
-- ARGV[10] the key   ARGV[11] its leaf
-- With ARGV[5] = '' (a standalone Redis only, where a script may touch two hash slots)
-- the entry is stamped here, from KEYS[5] the namespace meta hash, as stamp.lua does
-- with its clock floor; ARGV[7] is then ignored. It saves the home a round trip a write.
-- Returns {1, version, written_ms, expires_ms, generation, tag versions "3,9"}
-- or {0, 'stale'|'precondition'|'exhausted'|'invalid', current}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local ttl, keep = whole(ARGV[3], 1), whole(ARGV[4], 0)
if ttl == nil or keep == nil or now_ms + ttl + keep > MAX_VERSION then
  return {0, 'invalid', 0}
end
local held = tonumber(redis.call('HGET', KEYS[1], 'ver')) or 0
if ARGV[9] ~= '' and tonumber(ARGV[9]) ~= held then
  return {0, 'precondition', held}
end
local cur = math.max(held, applied_version(ARGV[10]))
local ver
if ARGV[8] ~= '' then
  ver = whole(ARGV[8], 1)
  if ver == nil then return {0, 'invalid', cur} end
  if ver <= cur then return {0, 'stale', cur} end
else
  -- the clock term survives a Redis that lost the tombstone; +1 survives a clock step back
  ver = math.max(cur + 1, now)
  -- past 2^53 - 1 a version is no longer exact (and would repeat): refuse the write
  if ver > MAX_VERSION then return {0, 'exhausted', cur} end
end
local gen, tv = ARGV[5], ARGV[7]
if gen == '' then
  local function stamp(field)
    return string.format('%d', math.max(tonumber(redis.call('HGET', KEYS[5], field)) or 0, now - 1))
  end
  gen = stamp('gen')
  local versions = {}
  for tag in string.gmatch(ARGV[6], '[^,]+') do
    versions[#versions + 1] = stamp('t:' .. tag)
  end
  tv = table.concat(versions, ',')
end
local exp = now_ms + ttl
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'ct', ARGV[2], 'ver', string.format('%d', ver),
  'ts', string.format('%d', now_ms), 'exp', string.format('%d', exp),
  'gen', gen, 'tg', ARGV[6], 'tv', tv)
redis.call('PEXPIREAT', KEYS[1], string.format('%d', exp + keep))
record_applied(ARGV[10], ARGV[11], ver)
-- any change of the entry revokes an origin fill in flight (its install will be refused)
redis.call('DEL', KEYS[3])
return {1, ver, now_ms, exp, gen, tv}
