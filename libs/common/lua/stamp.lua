-- The stamps a new entry is written under: the namespace generation and the
-- current versions of its tags. Creates the generation when the meta hash is
-- missing (first write, or evicted), so an entry is never valid without it.
-- KEYS[1] namespace meta hash   ARGV tags
-- Returns {generation, tag version...} as strings.
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then
  local t = redis.call('TIME')
  gen = string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('HSET', KEYS[1], 'gen', gen)
end
local out = {gen}
for i, tag in ipairs(ARGV) do
  out[i + 1] = redis.call('HGET', KEYS[1], 't:' .. tag) or '0'
end
return out
