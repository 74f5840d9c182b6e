-- A stand-in for Iguana's built-in `net.http`, on LuaSocket (Debian: lua-socket),
-- so examples/iguana/tokenbroker.lua runs under a plain lua5.1:
--
--   local body, code, headers = net.http.post{url=, headers=, body=, timeout=, live=true}
--   (also get, put, delete)
--
-- As in Iguana, any HTTP status is returned (the caller checks `code`), and a
-- request that gets no answer (connection refused, timeout) raises an error.
-- `live` is accepted and ignored (Iguana's editor skips requests without it).
-- Plain http:// only, HTTP/1.1 (LuaSocket speaks HTTP/1.x).

local http = require 'socket.http'
local ltn12 = require 'ltn12'

local net = { http = {} }

local function request(method, args)
   assert(type(args) == 'table' and args.url, 'net.http.' .. method:lower() .. ': url is required')
   local headers = {}
   for k, v in pairs(args.headers or {}) do headers[k:lower()] = v end
   local source
   if args.body then
      source = ltn12.source.string(args.body)
      headers['content-length'] = tostring(#args.body)
   end
   http.TIMEOUT = args.timeout or 15
   local chunks = {}
   local ok, code, responseHeaders = http.request{
      url = args.url,
      method = method,
      headers = headers,
      source = source,
      sink = ltn12.sink.table(chunks),
      redirect = false,
   }
   if not ok then
      error(('net.http.%s: %s: %s'):format(method:lower(), args.url, tostring(code)), 0)
   end
   return table.concat(chunks), code, responseHeaders or {}
end

function net.http.get(args) return request('GET', args) end
function net.http.post(args) return request('POST', args) end
function net.http.put(args) return request('PUT', args) end
function net.http.delete(args) return request('DELETE', args) end

return net
