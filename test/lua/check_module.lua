-- Drives examples/iguana/tokenbroker.lua against a running broker for
-- test/lua-client.test.ts: caching until shortly before expiry (with a clock
-- the script moves), the broker's errors as Lua errors, and parseTime.
--
--   lua5.1 test/lua/check_module.lua BROKER_URL TENANT_ID
--
-- Prints one JSON line per step; never a token.

local Dir = (arg[0]:match('^(.*)[/\\]') or '.')..'/../../examples/iguana/'
package.path = Dir..'?.lua;'..Dir..'shim/?.lua;'..package.path
net = require 'net'
json = require 'json'
local tokenbroker = require 'tokenbroker'

local Broker, Tenant = arg[1], arg[2]
local function emit(T) print(json.serialize{data=T}) io.stdout:flush() end

local Now = os.time()
local Xero = tokenbroker.new{broker=Broker, tenant=Tenant, margin=120, now=function() return Now end}

local First = Xero:token()
emit{step='first', getToken=Xero.calls.GetToken, version=tonumber(First.version),
   expiresAtTime=First.expiresAtTime, tenantIds=First.tenantIds, tokenType=First.tokenType,
   connectionId=First.connectionId, accessTokenLength=#First.accessToken}

local Again = Xero:token()
emit{step='cached', getToken=Xero.calls.GetToken, same=(Again == First)}

Now = First.expiresAtTime - 121
Xero:token()
emit{step='before_margin', getToken=Xero.calls.GetToken}

Now = First.expiresAtTime - 120
Xero:token()
emit{step='within_margin', getToken=Xero.calls.GetToken}

local Unknown = tokenbroker.new{broker=Broker, tenant='no-such-tenant'}
local Ok, Err = pcall(Unknown.token, Unknown)
emit{step='not_found', ok=Ok, error=tostring(Err)}

local Down = tokenbroker.new{broker='http://127.0.0.1:1', tenant=Tenant}
Ok, Err = pcall(Down.token, Down)
emit{step='unreachable', ok=Ok, error=tostring(Err)}

local Times = {}
for _, Text in ipairs{'1970-01-01T00:00:00Z', '2000-02-29T12:34:56Z', '2026-11-26T10:30:00.123Z', '2100-03-01T00:00:01Z'} do
   Times[#Times + 1] = { text = Text, seconds = tokenbroker.parseTime(Text) }
end
emit{step='parse_time', times=Times}
