-- Drives examples/iguana/tokenbroker.lua against a broker that requires API
-- keys, for test/lua-client.test.ts: the broker's refusals as Lua errors, and
-- the key kept out of the client table and out of every message.
--
--   TOKENBROKER_KEY=<key for TENANT_ID> OTHER_KEY=<key for another tenant> \
--     lua5.1 test/lua/check_auth.lua BROKER_URL TENANT_ID
--
-- Prints one JSON line per step; never a token or a key.

local Dir = (arg[0]:match('^(.*)[/\\]') or '.')..'/../../examples/iguana/'
package.path = Dir..'?.lua;'..Dir..'shim/?.lua;'..package.path
net = require 'net'
json = require 'json'
local tokenbroker = require 'tokenbroker'

local Broker, Tenant = arg[1], arg[2]
local Key, OtherKey = os.getenv('TOKENBROKER_KEY'), os.getenv('OTHER_KEY')
local function emit(T) print(json.serialize{data=T}) io.stdout:flush() end

-- True when Value, or any string reachable from it, holds Secret.
local function holds(Value, Secret, Seen)
   Seen = Seen or {}
   if type(Value) == 'string' then return Value:find(Secret, 1, true) ~= nil end
   if type(Value) ~= 'table' or Seen[Value] then return false end
   Seen[Value] = true
   for K, V in pairs(Value) do
      if holds(K, Secret, Seen) or holds(V, Secret, Seen) then return true end
   end
   return holds(getmetatable(Value), Secret, Seen)
end

-- The right key, with surrounding whitespace (as read from a file) trimmed.
local Xero = tokenbroker.new{broker=Broker, tenant=Tenant, key=' '..Key..'\n'}
local T = Xero:token()
emit{step='token', getToken=Xero.calls.GetToken, version=tonumber(T.version), keyInClient=holds(Xero, Key)}
T = Xero:reportExpired(T.accessToken)
emit{step='report_expired', reportExpired=Xero.calls.ReportExpired, version=tonumber(T.version)}

local Unknown = tokenbroker.new{broker=Broker, tenant=Tenant, key='tbk_'..('0'):rep(43)}
local Ok, Err = pcall(Unknown.token, Unknown)
emit{step='unknown_key', ok=Ok, error=tostring(Err)}

-- Another tenant's key: refused for ReportExpired too.
local Other = tokenbroker.new{broker=Broker, tenant=Tenant, key=OtherKey}
Ok, Err = pcall(Other.reportExpired, Other, 'some-token')
emit{step='other_tenant_report', ok=Ok, error=tostring(Err), calls=Other.calls.ReportExpired}

-- A key that would break the header is refused at once, without echoing it.
Ok, Err = pcall(tokenbroker.new, {broker=Broker, tenant=Tenant, key=OtherKey..'\r\nX-Injected: 1'})
emit{step='bad_key', ok=Ok, error=tostring(Err)}
