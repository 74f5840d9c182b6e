-- A stand-in for the part of Iguana's built-in `util` module that
-- examples/iguana/tokenbroker.lua uses, on LuaSocket: util.sleep(ms).

local socket = require 'socket'

local util = {}

function util.sleep(Ms)
   socket.sleep(Ms / 1000)
end

return util
