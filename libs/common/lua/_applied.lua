-- Shared preamble of every script that changes a key's applied version.
-- The applied version of a key is what this region knows about it (value,
-- tombstone or superseded marker); unlike the entry it is never evicted or
-- expired, so the reconciler can digest it and an evicted tombstone can never
-- let an older fill back in. Per namespace:
--   index  <ix prefix><leaf>  hash key -> applied version (leaf = 4 hex of sha1(key))
--   digest <dg key>           hash leaf -> sum of h(key, version) mod 2^48
local DIGEST_MOD = 281474976710656

local function leaf_of(key)
  return string.sub(redis.sha1hex(key), 1, 4)
end

local function h(key, ver)
  return tonumber(string.sub(redis.sha1hex(key .. '\0' .. string.format('%d', ver)), 1, 12), 16)
end

-- the version this region has applied for the key (0 = never)
local function applied_version(ix_prefix, key)
  return tonumber(redis.call('HGET', ix_prefix .. leaf_of(key), key)) or 0
end

-- record that the key's applied version is now `new`, keeping its leaf digest
local function record_applied(ix_prefix, dg_key, key, new)
  local leaf = leaf_of(key)
  local ix = ix_prefix .. leaf
  local prev = tonumber(redis.call('HGET', ix, key)) or 0
  if prev == new then return end
  local d = tonumber(redis.call('HGET', dg_key, leaf)) or 0
  if prev > 0 then d = d - h(key, prev) end
  d = (d + h(key, new)) % DIGEST_MOD
  redis.call('HSET', ix, key, string.format('%d', new))
  redis.call('HSET', dg_key, leaf, string.format('%d', d))
end
