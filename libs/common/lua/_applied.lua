-- Shared preamble of every script that changes a key's applied version.
-- The applied version of a key is what this region knows about it (value,
-- tombstone or superseded marker); unlike the entry it is never evicted or
-- expired, so the reconciler can digest it and an evicted tombstone can never
-- let an older fill back in. Both hashes share the entry's hash slot:
--   KEYS[4] index of the key's leaf      key -> applied version
--   KEYS[2] digest of the key's bucket   leaf -> sum of h(key, version) mod 2^48
local DIGEST_MOD = 281474976710656
-- versions and millisecond times stay exact integers in Lua's doubles up to 2^53 - 1
local MAX_VERSION = 9007199254740991

local function h(key, ver)
  return tonumber(string.sub(redis.sha1hex(key .. '\0' .. string.format('%d', ver)), 1, 12), 16)
end

-- a whole number in [low, MAX_VERSION] given as an argument, else nil: every script
-- checks its numbers before its first write, so a bad one changes nothing
local function whole(arg, low)
  local n = tonumber(arg)
  if n == nil or n ~= math.floor(n) or n < low or n > MAX_VERSION then return nil end
  return n
end

-- the version this region has applied for the key (0 = never)
local function applied_version(key)
  return tonumber(redis.call('HGET', KEYS[4], key)) or 0
end

-- record that the key's applied version is now `new`, keeping its leaf digest
local function record_applied(key, leaf, new)
  local prev = tonumber(redis.call('HGET', KEYS[4], key)) or 0
  if prev == new then return end
  local d = tonumber(redis.call('HGET', KEYS[2], leaf)) or 0
  if prev > 0 then d = d - h(key, prev) end
  d = (d + h(key, new)) % DIGEST_MOD
  redis.call('HSET', KEYS[4], key, string.format('%d', new))
  redis.call('HSET', KEYS[2], leaf, string.format('%d', d))
end
