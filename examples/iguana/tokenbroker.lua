-- tokenbroker.lua: Xero access tokens from tokenbroker, for Iguana channels.
--
-- Put this file in the channel's shared modules. It uses only Iguana's
-- built-in net.http, json, util and (optionally) store2, and speaks the
-- broker's Connect JSON protocol (a plain HTTP/1.1 POST), so no gRPC library
-- is needed.
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
-- Errors from the broker (unknown tenant, connection needs re-authorisation)
-- raise a Lua error carrying the broker's message.
--
-- Local copy: with `store` (an Iguana store2 store, e.g. store2.connect('tokenbroker.db')),
-- the last token is kept there too, for every channel that uses the same store.
-- When the broker cannot be reached (no answer, or HTTP 502/503/504), a token
-- that is still valid (from memory or the copy) is used, and the broker is
-- asked again after a backoff with jitter (1 s, 2 s, 4 s... up to `backoff.max`);
-- once no valid token is left, each call fails with a message naming the
-- broker's URL, until the broker answers again. The copy holds an access token
-- (valid for at most 30 minutes): keep the store where only Iguana can read it.
--
-- Long poll: Xero:poll(Wait) asks the broker for a token newer than the one
-- held and waits up to Wait seconds (at most 60) for it: a channel (or one
-- channel for all, through a shared store) can run it in a loop to have the next
-- token before the current one expires. Nothing here logs or prints a token.
--
-- Through the broker's Xero API proxy, a channel never holds a token at all,
-- and every channel calling one organisation shares its call limits:
--
--   local Body, Code, Headers = tokenbroker.xero{broker='http://tokenbroker.local:50051',
--      key=os.getenv('TOKENBROKER_KEY'), tenant='<tenant id>', path='api.xro/2.0/Invoices'}
--
-- (or Xero:xero{path=...} with a client from tokenbroker.new). The broker adds
-- the token, refreshes it on a 401, and answers 429 with Retry-After itself
-- when the organisation's budget is spent (see docs/proxy.md).

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

-- Visible ASCII only (no header injection); an empty key sends none.
local function checkedKey(Key, Where)
   if Key == nil then return nil end
   if type(Key) ~= 'string' then error(Where..': key must be a string', 3) end
   Key = Key:match('^%s*(.-)%s*$')
   if Key:find('[^\33-\126]') then error(Where..': key is not an API key (visible ASCII characters only)', 3) end
   if Key == '' then return nil end
   return Key
end

--- Creates a client for one tenant.
-- Config.broker  the broker's base URL, e.g. 'http://127.0.0.1:50051'
-- Config.tenant  the Xero tenant id (sent as xero-tenant-id)
-- Config.key     the API key sent to the broker (nil or '' sends none)
-- Config.margin  seconds before expiry at which a cached token is replaced (default 60)
-- Config.timeout seconds to wait for the broker (default 15)
-- Config.store   the local copy: a store2 store (anything with :get(Key) and :put(Key, Value)); nil keeps none
-- Config.backoff {base=1, max=30}: seconds between attempts while the broker cannot be reached
-- Config.now     the clock, seconds since the epoch (default os.time)
-- Config.random  the jitter's random numbers in [0, 1) (default math.random)
function tokenbroker.new(Config)
   assert(type(Config) == 'table' and Config.broker and Config.tenant, 'tokenbroker.new{broker=, tenant=} is required')
   -- Never echo the key: it is a secret.
   local Key = checkedKey(Config.key, 'tokenbroker.new')
   local Backoff = Config.backoff or {}
   local Self = setmetatable({
      broker = (Config.broker:gsub('/+$', '')),
      tenant = Config.tenant,
      margin = Config.margin or 60,
      timeout = Config.timeout or 15,
      store = Config.store,
      backoff = { base = Backoff.base or 1, max = Backoff.max or 30 },
      now = Config.now or os.time,
      random = Config.random or math.random,
      cached = nil,
      -- Where the last token came from: 'memory', 'copy' (the local copy), 'broker', or 'away'
      -- (held, and still valid, while the broker cannot be reached).
      source = nil,
      -- While the broker cannot be reached: {failures=, retryAt=, reason=}.
      away = nil,
      -- How many times each RPC was called (for logs and tests).
      calls = { GetToken = 0, ReportExpired = 0 },
   }, Client)
   Keys[Self] = Key
   return Self
end

-- The local copy's key: one token per broker and tenant.
function Client:copyKey()
   return 'tokenbroker '..self.broker..' '..self.tenant
end

-- The token in the local copy, or nil (none, or unreadable: the broker is asked instead).
function Client:loadCopy()
   if not self.store then return nil end
   local Ok, Text = pcall(self.store.get, self.store, self:copyKey())
   if not Ok or type(Text) ~= 'string' or Text == '' then return nil end
   local Parsed, T = pcall(json.parse, {data=Text})
   if not Parsed or type(T) ~= 'table' or type(T.accessToken) ~= 'string' or not T.expiresAt then return nil end
   local Timed, Time = pcall(parseTime, T.expiresAt)
   if not Timed then return nil end
   T.expiresAtTime = Time
   return T
end

-- Keeps T in memory and in the local copy (a copy that cannot be written is not fatal: memory still has it).
function Client:keep(T)
   self.cached = T
   if not self.store then return end
   local Copy = {}
   for K, V in pairs(T) do if K ~= 'expiresAtTime' then Copy[K] = V end end
   pcall(self.store.put, self.store, self:copyKey(), json.serialize{data=Copy})
end

-- The newest token held, in memory or in the local copy (another channel may have put a newer one there).
function Client:held()
   local T = self.cached
   local Now = self.now()
   if T and Now < T.expiresAtTime - self.margin then return T, 'memory' end
   local Copy = self:loadCopy()
   if Copy and (not T or Copy.expiresAtTime > T.expiresAtTime) then
      self.cached = Copy
      return Copy, 'copy'
   end
   return T, 'memory'
end

-- The broker could not be reached: the next attempt waits, 1, 2, 4... seconds up to backoff.max, less up to half (jitter).
function Client:wentAway(Reason)
   local Failures = (self.away and self.away.failures or 0) + 1
   local Delay = math.min(self.backoff.max, self.backoff.base * 2 ^ (Failures - 1))
   Delay = Delay * (0.5 + 0.5 * self.random())
   self.away = { failures = Failures, retryAt = self.now() + Delay, reason = Reason }
end

-- A still-valid token while the broker is away, or the error that says why there is none.
function Client:fallback(T)
   local Now = self.now()
   if T and Now < T.expiresAtTime then
      self.source = 'away'
      return T
   end
   local Away = self.away
   local Copy = T and ('the last token expired at '..tostring(T.expiresAt)) or 'no token was kept'
   error(('tokenbroker: the broker at %s cannot be reached (%s; next attempt in %d s) and %s'):format(
      self.broker, tostring(Away and Away.reason), math.max(0, math.ceil((Away and Away.retryAt or Now) - Now)), Copy), 0)
end

-- Statuses of a broker that is there but cannot answer (restarting, behind a proxy): as good as away.
local AWAY_STATUS = { [502] = true, [503] = true, [504] = true }

-- POSTs one Connect JSON request. Returns the decoded reply (the token kept as
-- the local copy too), or nil and the reason when the broker cannot be reached
-- (see wentAway); raises the broker's error when it answers with one.
function Client:rpc(Method, Request, Timeout)
   if self.away and self.now() < self.away.retryAt then return nil, self.away.reason end
   self.calls[Method] = self.calls[Method] + 1
   local Headers = { ['Content-Type'] = 'application/json', ['Connect-Protocol-Version'] = '1' }
   local Key = Keys[self]
   if Key then Headers['Authorization'] = 'Bearer '..Key end
   local Sent, Body, Code = pcall(net.http.post, {
      url = self.broker..SERVICE..Method,
      headers = Headers,
      body = json.serialize{data=Request},
      timeout = Timeout or self.timeout,
      live = true,
   })
   if not Sent or AWAY_STATUS[Code] then
      local Reason = Sent and ('HTTP '..tostring(Code)) or tostring(Body):sub(1, 200)
      self:wentAway(Reason)
      return nil, Reason
   end
   self.away = nil
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
   self.source = 'broker'
   self:keep(Reply.token)
   return Reply
end

--- The current token: {accessToken=, tokenType=, expiresAt=, expiresAtTime=,
-- connectionId=, tenantIds=, scopes=, version=}. Calls the broker only when
-- neither memory nor the local copy holds a token valid for `margin` seconds
-- more; when the broker cannot be reached, a token still valid is returned.
function Client:token()
   local T, From = self:held()
   if T and self.now() < T.expiresAtTime - self.margin then
      self.source = From
      return T
   end
   local Reply = self:rpc('GetToken', { tenantId = self.tenant, minValidFor = self.margin..'s' })
   if Reply then return Reply.token end
   return self:fallback(T)
end

--- Long poll: waits up to Wait seconds (default 50, at most 60) for a token
-- newer than the one held, and returns the token to use now and whether it
-- is a new one. A channel can call it in a loop: it returns at once when a
-- newer token is stored, after a refresh, or when Wait runs out. While the
-- broker cannot be reached it sleeps until the next attempt (at most Wait)
-- and returns what it holds (nil if nothing).
function Client:poll(Wait)
   Wait = math.min(Wait or 50, 60)
   local T = self:held()
   if self.away then
      local Left = self.away.retryAt - self.now()
      if Left > 0 then
         util.sleep(math.floor(math.min(Left, Wait) * 1000)) -- Iguana's util.sleep(ms)
         if Left > Wait then return T, false end
      end
   end
   local Request = { tenantId = self.tenant, minValidFor = self.margin..'s' }
   -- Only a token valid for `margin` more is worth waiting with; any other is replaced at once.
   if T and self.now() < T.expiresAtTime - self.margin then
      Request.newerThan = tostring(T.version)
      Request.wait = Wait..'s'
   end
   local Reply = self:rpc('GetToken', Request, Wait + self.timeout)
   if not Reply then return T, false end
   return Reply.token, not T or tonumber(Reply.token.version) ~= tonumber(T.version)
end

--- Tells the broker that AccessToken was answered 401; returns the token to use now.
function Client:reportExpired(AccessToken)
   local Reply, Away = self:rpc('ReportExpired', { tenantId = self.tenant, accessToken = AccessToken })
   if Reply then return Reply.token end
   -- Xero refused the token held: the copy cannot help.
   error(('tokenbroker: the broker at %s cannot be reached (%s) to replace a token Xero refused'):format(self.broker, tostring(Away)), 0)
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

-- The proxy's path: 'api.xro/2.0/Invoices' or '/api.xro/2.0/Invoices', with `query` ({where='...'}) percent-encoded.
local function proxyUrl(Broker, Path, Query)
   if type(Path) ~= 'string' or Path == '' then error('tokenbroker.xero: path is required, e.g. path=\'api.xro/2.0/Invoices\'', 3) end
   local Url = Broker..'/xero/'..Path:gsub('^/+', '')
   if Query then
      local Parts = {}
      for K, V in pairs(Query) do
         local function enc(X) return (tostring(X):gsub('[^%w%-%._~]', function(C) return ('%%%02X'):format(C:byte()) end)) end
         Parts[#Parts + 1] = enc(K)..'='..enc(V)
      end
      table.sort(Parts)
      if #Parts > 0 then Url = Url..(Url:find('?', 1, true) and '&' or '?')..table.concat(Parts, '&') end
   end
   return Url
end

--- Calls the Xero API through the broker's proxy: Args = {broker=, key=, tenant=, path=,
-- method='GET', query=, headers=, body=, timeout=}. The broker adds the token (and refreshes it on a
-- 401) and keeps the organisation's call limits; the channel never sees a token. Returns body, code,
-- headers like net.http: Xero's answer, or the broker's own (401/403 for the key, 429 with
-- Retry-After when the organisation's budget is spent, 502/504 when Xero cannot be reached).
-- Raises an error naming the broker's URL (never the key) when the broker cannot be reached.
function tokenbroker.xero(Args)
   assert(type(Args) == 'table' and Args.broker and Args.path, 'tokenbroker.xero{broker=, path=} is required')
   local Broker = Args.broker:gsub('/+$', '')
   local Headers = { Accept = 'application/json' }
   for K, V in pairs(Args.headers or {}) do
      local Name = tostring(K):lower()
      if Name ~= 'authorization' and Name ~= 'xero-tenant-id' then Headers[K] = V end
   end
   local Key = checkedKey(Args.key, 'tokenbroker.xero')
   if Key then Headers['Authorization'] = 'Bearer '..Key end
   if Args.tenant then Headers['xero-tenant-id'] = Args.tenant end
   if Args.body and not Headers['Content-Type'] and not Headers['content-type'] then Headers['Content-Type'] = 'application/json' end
   local Method = (Args.method or 'GET'):lower()
   local Send = net.http[Method]
   if not Send then error('tokenbroker.xero: net.http has no method '..Method, 2) end
   local Sent, Body, Code, ResponseHeaders = pcall(Send, {url=proxyUrl(Broker, Args.path, Args.query), headers=Headers,
      body=Args.body, timeout=Args.timeout or 60, live=true})
   if not Sent then
      error(('tokenbroker: the broker at %s cannot be reached (%s)'):format(Broker, tostring(Body):sub(1, 200)), 0)
   end
   return Body, Code, ResponseHeaders
end

--- Calls the Xero API through the broker's proxy for this client's tenant (see tokenbroker.xero).
function Client:xero(Args)
   local Call = {}
   for K, V in pairs(Args) do Call[K] = V end
   Call.broker, Call.key, Call.tenant = self.broker, Keys[self], Args.tenant or self.tenant
   return tokenbroker.xero(Call)
end

return tokenbroker
