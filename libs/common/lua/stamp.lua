-- The stamps a new entry is written under: the namespace generation and the
-- current versions of its tags ('0' where never invalidated).
-- KEYS[1] namespace meta hash   ARGV tags
-- Returns {generation, tag version...} as strings.
local out = {redis.call('HGET', KEYS[1], 'gen') or '0'}
for i, tag in ipairs(ARGV) do
  out[i + 1] = redis.call('HGET', KEYS[1], 't:' .. tag) or '0'
end
return out
