-- Runs tokenbroker.lua outside Iguana, with the shims in shim/ standing in
-- for Iguana's net.http and json (needs lua5.1 and lua-socket):
--
--   TOKENBROKER_KEY=<key> lua5.1 examples/iguana/run_example.lua BROKER_URL TENANT_ID API_URL [CALLS]
--
-- TOKENBROKER_KEY is the channel's API key for the broker (unset: none is sent).
-- Calls API_URL (GET) CALLS times (default 1) through the module and prints
-- one JSON line per call: HTTP status, token version, and how many times the
-- broker was asked so far. Never prints a token. Exit status 1 on an error.

local Dir = (arg[0]:match('^(.*)[/\\]') or '.')..'/'
package.path = Dir..'?.lua;'..Dir..'shim/?.lua;'..package.path

-- What Iguana provides as globals.
net = require 'net'
json = require 'json'

local tokenbroker = require 'tokenbroker'

local Broker, Tenant, ApiUrl, Calls = arg[1], arg[2], arg[3], tonumber(arg[4] or '1')
if not (Broker and Tenant and ApiUrl and Calls) then
   io.stderr:write('usage: [TOKENBROKER_KEY=<key>] lua5.1 run_example.lua BROKER_URL TENANT_ID API_URL [CALLS]\n')
   os.exit(2)
end

local Made, Xero = pcall(tokenbroker.new, {broker=Broker, tenant=Tenant, key=os.getenv('TOKENBROKER_KEY')})
if not Made then
   io.stderr:write(tostring(Xero)..'\n') -- never contains the key
   os.exit(2)
end

local Ok, Err = pcall(function()
   for N = 1, Calls do
      local Body, Code = Xero:call{url=ApiUrl}
      local Line = {
         step = 'call', n = N, status = Code, version = tonumber(Xero.cached.version),
         getToken = Xero.calls.GetToken, reportExpired = Xero.calls.ReportExpired,
      }
      if Code == 200 then
         -- Xero's /connections answers a list of tenants.
         local List = json.parse{data=Body}
         Line.tenants = #List
      end
      print(json.serialize{data=Line})
      io.stdout:flush()
   end
end)
if not Ok then
   io.stderr:write(tostring(Err)..'\n')
   os.exit(1)
end
