-- Install a copy made elsewhere (a remote fill from the home region, or a
-- replicated value carried by an event) only if nothing newer is known here.
-- Equal versions install only over a 'superseded' marker of that same version.
-- This comparison is what closes the stale-set race of architecture.md.
-- KEYS[1] entry hash
-- ARGV[1] value  ARGV[2] content type  ARGV[3] version  ARGV[4] written ms
-- ARGV[5] expires ms (absolute)  ARGV[6] ms to keep past expiry
-- ARGV[7] generation  ARGV[8] tags  ARGV[9] tag versions
-- Returns {1, version} or {0, current}.
local cur = tonumber(redis.call('HGET', KEYS[1], 'ver')) or 0
local ver = tonumber(ARGV[3])
if ver < cur then return {0, cur} end
if ver == cur and redis.call('HGET', KEYS[1], 'tomb') ~= 'm' then return {0, cur} end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = tonumber(ARGV[5])
if exp <= now_ms then return {0, cur} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'ct', ARGV[2], 'ver', ARGV[3], 'ts', ARGV[4],
  'exp', ARGV[5], 'gen', ARGV[7], 'tg', ARGV[8], 'tv', ARGV[9])
redis.call('PEXPIREAT', KEYS[1], exp + tonumber(ARGV[6]))
return {1, ver}
