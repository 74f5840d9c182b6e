-- tokenbroker.lua: Xero access tokens from tokenbroker, for Iguana channels.
--
-- Put this file in the channel's shared modules. It uses only Iguana's
-- built-in net.http and json, and speaks the broker's Connect JSON protocol
-- (a plain HTTP/1.1 POST), so no gRPC library is needed.
--
--   local tokenbroker = require 'tokenbroker'
--   -- At the top level, outside main(), so the cached token outlives a message:
--   local Xero = tokenbroker.new{broker='http://tokenbroker.local:50051', tenant='<tenant id>',
--                                key=os.getenv('TOKENBROKER_KEY')}
--
--   function main(Data)
--      local Body, Code = Xero:call{url='https://api.xero.com/api.xro/2.0/Invoices'}
--      if Code ~= 200 then error('Xero answered '..Code) end
--      local Invoices = json.parse{data=Body}
--   end
--
-- `key` is the channel's API key (`tokenbroker keys create`), sent to the broker
-- as `Authorization: Bearer <key>`; it is kept out of the client table (so
-- trace() and json.serialize never show it) and out of every error message.
-- Xero:call adds `Authorization: Bearer <token>` and `xero-tenant-id`. The token
-- is cached until `margin` seconds before it expires; when Xero answers 401, the
-- token used is reported to the broker (ReportExpired), which refreshes it once
-- for every channel, and the request is sent once more with the new token.
-- Errors from the broker (unknown tenant, connection needs re-authorisation,
-- Xero unreachable) raise a Lua error carrying the broker's message.

local tokenbroker = {}

local Client = {}
Client.__index = Client

local SERVICE = '/tokenbroker.v1.TokenService/'

-- Each client's API key, out of sight of anything that prints the client.
local Keys = setmetatable({}, { __mode = 'k' })

-- Seconds since the epoch of an RFC 3339 UTC time, as the broker sends
-- `expiresAt` ("2026-11-26T10:30:00Z", "2026-11-26T10:30:00.123Z").
local function parseTime(Text)
   local Y, M, D, h, m, s = tostring(Text):match('^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)')
   if not Y then error('tokenbroker: unexpected expiresAt '..tostring(Text), 0) end
   Y, M, D = tonumber(Y), tonumber(M), tonumber(D)
   -- Days from 1970-01-01 to Y-M-D in the proleptic Gregorian calendar.
   if M <= 2 then Y = Y - 1 end
   local Era = math.floor(Y / 400)
   local YearOfEra = Y - Era * 400
   local DayOfYear = math.floor((153 * (M > 2 and M - 3 or M + 9) + 2) / 5) + D - 1
   local DayOfEra = YearOfEra * 365 + math.floor(YearOfEra / 4) - math.floor(YearOfEra / 100) + DayOfYear
   local Days = Era * 146097 + DayOfEra - 719468
   return Days * 86400 + tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(s)
end
tokenbroker.parseTime = parseTime

--- Creates a client for one tenant.
-- Config.broker  the broker's base URL, e.g. 'http://127.0.0.1:50051'
-- Config.tenant  the Xero tenant id (sent as xero-tenant-id)
-- Config.key     the API key sent to the broker (nil or '' sends none)
-- Config.margin  seconds before expiry at which a cached token is replaced (default 60)
-- Config.timeout seconds to wait for the broker (default 15)
-- Config.now     the clock, seconds since the epoch (default os.time)
function tokenbroker.new(Config)
   assert(type(Config) == 'table' and Config.broker and Config.tenant, 'tokenbroker.new{broker=, tenant=} is required')
   local Key = Config.key
   if Key ~= nil then
      -- Never echo the key: it is a secret. Visible ASCII only (no header injection).
      if type(Key) ~= 'string' then error('tokenbroker.new: key must be a string', 2) end
      Key = Key:match('^%s*(.-)%s*$')
      if Key:find('[^\33-\126]') then error('tokenbroker.new: key is not an API key (visible ASCII characters only)', 2) end
      if Key == '' then Key = nil end
   end
   local Self = setmetatable({
      broker = Config.broker:gsub('/+$', ''),
      tenant = Config.tenant,
      margin = Config.margin or 60,
      timeout = Config.timeout or 15,
      now = Config.now or os.time,
      cached = nil,
      -- How many times each RPC was called (for logs and tests).
      calls = { GetToken = 0, ReportExpired = 0 },
   }, Client)
   Keys[Self] = Key
   return Self
end

-- POSTs one Connect JSON request; returns the decoded reply or raises the broker's error.
function Client:rpc(Method, Request)
   self.calls[Method] = self.calls[Method] + 1
   local Headers = { ['Content-Type'] = 'application/json', ['Connect-Protocol-Version'] = '1' }
   local Key = Keys[self]
   if Key then Headers['Authorization'] = 'Bearer '..Key end
   local Body, Code = net.http.post{
      url = self.broker..SERVICE..Method,
      headers = Headers,
      body = json.serialize{data=Request},
      timeout = self.timeout,
      live = true,
   }
   local Parsed, Reply = pcall(json.parse, {data=Body})
   if Code ~= 200 then
      -- Connect errors are {"code":"not_found","message":"tenant … is not connected"}.
      if Parsed and type(Reply) == 'table' and Reply.message then
         local Hint = ''
         if Code == 401 then
            Hint = Key and ' (the key sent is unknown or revoked)' or ' (no key was sent: tokenbroker.new{key=})'
         end
         error(('tokenbroker %s: %s: %s%s'):format(Method, tostring(Reply.code), Reply.message, Hint), 0)
      end
      error(('tokenbroker %s: HTTP %s'):format(Method, tostring(Code)), 0)
   end
   if not Parsed or type(Reply) ~= 'table' or type(Reply.token) ~= 'table' then
      error(('tokenbroker %s: unexpected reply'):format(Method), 0)
   end
   Reply.token.expiresAtTime = parseTime(Reply.token.expiresAt)
   self.cached = Reply.token
   return Reply
end

--- The current token: {accessToken=, tokenType=, expiresAt=, expiresAtTime=,
-- connectionId=, tenantIds=, scopes=, version=}. Calls the broker only when
-- nothing is cached or the cached token expires within `margin` seconds.
function Client:token()
   local T = self.cached
   if T and self.now() < T.expiresAtTime - self.margin then return T end
   return self:rpc('GetToken', { tenantId = self.tenant, minValidFor = self.margin..'s' }).token
end

--- Tells the broker that AccessToken was answered 401; returns the token to use now.
function Client:reportExpired(AccessToken)
   return self:rpc('ReportExpired', { tenantId = self.tenant, accessToken = AccessToken }).token
end

local function send(Args, Tenant, T)
   local Headers = { Accept = 'application/json' }
   for K, V in pairs(Args.headers or {}) do Headers[K] = V end
   Headers['Authorization'] = (T.tokenType or 'Bearer')..' '..T.accessToken
   Headers['xero-tenant-id'] = Tenant
   local Method = (Args.method or 'GET'):lower()
   return net.http[Method]{url=Args.url, headers=Headers, body=Args.body, timeout=Args.timeout, live=true}
end

--- Calls the Xero API with the tenant's token: Args = {url=, method='GET', headers=, body=}.
-- Returns body, code, headers like net.http. On a 401 it reports the token,
-- gets the new one and retries once; a second 401 is returned to the caller.
function Client:call(Args)
   local T = self:token()
   local Body, Code, Headers = send(Args, self.tenant, T)
   if Code ~= 401 then return Body, Code, Headers end
   T = self:reportExpired(T.accessToken)
   return send(Args, self.tenant, T)
end

return tokenbroker
