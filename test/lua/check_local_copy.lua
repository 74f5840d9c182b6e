-- Drives examples/iguana/tokenbroker.lua's local copy and long poll for
-- test/lua-client.test.ts: reads one command a line from standard input and
-- answers each with one JSON line (never a token), on a clock the test moves.
--
--   lua5.1 test/lua/check_local_copy.lua BROKER_URL TENANT_ID STORE_FILE API_URL
--
-- Commands: `token NAME`, `call NAME`, `poll NAME SECONDS`, `advance SECONDS`.
-- NAME is a client (a channel), made on first use; all share STORE_FILE.

local Dir = (arg[0]:match('^(.*)[/\\]') or '.')..'/../../examples/iguana/'
package.path = Dir..'?.lua;'..Dir..'shim/?.lua;'..package.path
net = require 'net'
json = require 'json'
util = require 'util'
local store2 = require 'store2'
local socket = require 'socket'
local tokenbroker = require 'tokenbroker'

local Broker, Tenant, StoreFile, ApiUrl = arg[1], arg[2], arg[3], arg[4]
local Store = store2.connect(StoreFile)
local Offset = 0
local function now() return os.time() + Offset end
local function emit(T) print(json.serialize{data=T}) io.stdout:flush() end

local Clients = {}
local function client(Name)
   Clients[Name] = Clients[Name] or tokenbroker.new{broker=Broker, tenant=Tenant, store=Store, now=now,
      key=os.getenv('TOKENBROKER_KEY'), backoff={base=1, max=4}}
   return Clients[Name]
end

-- What a step reports of a client: never the token itself.
local function report(Step, Name, Ok, T, Extra)
   local C = client(Name)
   local Line = { step = Step, client = Name, ok = Ok, getToken = C.calls.GetToken, reportExpired = C.calls.ReportExpired, source = C.source }
   if Ok and type(T) == 'table' then
      Line.version = tonumber(T.version)
      Line.valid = now() < T.expiresAtTime
   elseif not Ok then
      Line.error = tostring(T)
   end
   for K, V in pairs(Extra or {}) do Line[K] = V end
   emit(Line)
end

for Line in io.lines() do
   local Command, Name, Arg = Line:match('^(%S+)%s*(%S*)%s*(%S*)')
   if Command == 'token' then
      local C = client(Name)
      report('token', Name, pcall(C.token, C))
   elseif Command == 'call' then
      local C = client(Name)
      local Ok, Body, Code = pcall(C.call, C, {url=ApiUrl})
      if Ok then report('call', Name, true, C.cached, {status=Code}) else report('call', Name, false, Body) end
   elseif Command == 'poll' then
      local C = client(Name)
      local Started = socket.gettime()
      local Ok, T, Changed = pcall(C.poll, C, tonumber(Arg))
      report('poll', Name, Ok, T, {changed=Changed, tookMs=math.floor((socket.gettime() - Started) * 1000)})
   elseif Command == 'advance' then
      Offset = Offset + tonumber(Name)
      emit{step='advance', offset=Offset}
   elseif Command == 'quit' then
      break
   end
end
