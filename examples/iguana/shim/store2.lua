-- A stand-in for Iguana's `store2` module (a SQLite key/value store shared by
-- the channels of one Iguana server), as one file, so the local copy of
-- examples/iguana/tokenbroker.lua works under a plain lua5.1:
--
--   local store2 = require 'store2'
--   local Store = store2.connect('/path/to/tokenbroker.store')
--   Store:put('key', 'value')   Store:get('key') --> 'value' (nil if none)
--
-- Every get reads the file, and every put rewrites it whole and renames it
-- into place, so another process reading it sees the old or the new
-- content, never half of one. The file is created readable by its owner only
-- (it holds access tokens). Keys and values are strings.

local store2 = {}

local Store = {}
Store.__index = Store

local function escape(s) return (s:gsub('[%%\t\n\r]', function(c) return ('%%%02X'):format(c:byte()) end)) end
local function unescape(s) return (s:gsub('%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end)) end
local function shellQuote(s) return "'"..s:gsub("'", "'\\''").."'" end

function store2.connect(Path)
   assert(type(Path) == 'string' and Path ~= '', 'store2.connect(path) is required')
   return setmetatable({ path = Path }, Store)
end

function Store:all()
   local Values = {}
   local File = io.open(self.path, 'r')
   if not File then return Values end
   for Line in File:lines() do
      local K, V = Line:match('^([^\t]*)\t(.*)$')
      if K then Values[unescape(K)] = unescape(V) end
   end
   File:close()
   return Values
end

function Store:get(Key)
   return self:all()[Key]
end

function Store:put(Key, Value)
   local Values = self:all()
   Values[Key] = Value ~= nil and tostring(Value) or nil
   local Temp = self.path..'.tmp'
   -- Created with umask 077 (owner only) before Lua opens it: io.open cannot set a mode.
   os.execute('umask 077 && : > '..shellQuote(Temp))
   local File = assert(io.open(Temp, 'w'))
   for K, V in pairs(Values) do File:write(escape(K), '\t', escape(V), '\n') end
   File:close()
   assert(os.rename(Temp, self.path))
end

function Store:delete(Key)
   self:put(Key, nil)
end

return store2
