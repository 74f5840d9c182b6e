-- Drives tokenbroker.xero{} and Client:xero{} of examples/iguana/tokenbroker.lua
-- against a broker's Xero API proxy, for test/lua-client.test.ts: calls with
-- no token in the channel, the broker's own 429, an unreachable broker.
--
--   TOKENBROKER_KEY=<key> lua5.1 test/lua/check_proxy.lua BROKER_URL TENANT_ID
--
-- Prints one JSON line per step; never a token or a key.

local Dir = (arg[0]:match('^(.*)[/\\]') or '.')..'/../../examples/iguana/'
package.path = Dir..'?.lua;'..Dir..'shim/?.lua;'..package.path
net = require 'net'
json = require 'json'
local tokenbroker = require 'tokenbroker'

local Broker, Tenant = arg[1], arg[2]
local Key = os.getenv('TOKENBROKER_KEY')
local function emit(T) print(json.serialize{data=T}) io.stdout:flush() end

local Body, Code = tokenbroker.xero{broker=Broker, key=Key, tenant=Tenant, path='api.xro/2.0/Organisation'}
local Org = json.parse{data=Body}
emit{step='organisation', code=Code, name=Org.Organisations and Org.Organisations[1] and Org.Organisations[1].Name}

local Xero = tokenbroker.new{broker=Broker, tenant=Tenant, key=Key}
Body, Code = Xero:xero{method='POST', path='/api.xro/2.0/Invoices',
   body=json.serialize{data={Invoices={{Type='ACCREC', Contact={Name='Lua Channel'}, LineItems={{Description='Proxied', UnitAmount=5}}}}}}}
local Created = json.parse{data=Body}
emit{step='invoice', code=Code, contact=Created.Invoices and Created.Invoices[1] and Created.Invoices[1].Contact.Name,
   getToken=Xero.calls.GetToken}

Body, Code = Xero:xero{path='api.xro/2.0/Invoices', query={where='Type=="ACCREC"'}}
emit{step='listed', code=Code}

local Headers
Body, Code, Headers = Xero:xero{path='api.xro/2.0/Contacts'}
emit{step='held_back', code=Code, retryAfter=Headers and tonumber(Headers['retry-after']),
   problem=Headers and Headers['x-rate-limit-problem']}

Body, Code = tokenbroker.xero{broker=Broker, key='tbk_not_a_key', tenant=Tenant, path='api.xro/2.0/Organisation'}
emit{step='unknown_key', code=Code}

local Ok, Err = pcall(tokenbroker.xero, {broker='http://127.0.0.1:1', key=Key, tenant=Tenant, path='api.xro/2.0/Organisation'})
emit{step='unreachable', ok=Ok, error=tostring(Err), keyInError=Key ~= nil and tostring(Err):find(Key, 1, true) ~= nil}
