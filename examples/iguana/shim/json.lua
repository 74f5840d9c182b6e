-- A stand-in for Iguana's built-in `json` module, in plain Lua 5.1:
-- json.parse{data=STRING} and json.serialize{data=TABLE}. Enough for the
-- broker's and Xero's JSON; not a general-purpose library (no comments, and
-- \u escapes outside the Basic Multilingual Plane are kept as two code units).

local json = {}

-- Iguana's sentinel for JSON null.
json.NULL = setmetatable({}, { __tostring = function() return 'null' end })

local escapes = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t' }

local function fail(s, i, what)
   error(('json.parse: %s at character %d'):format(what, i), 0)
end

local function skip(s, i)
   return s:find('[^ \t\r\n]', i) or #s + 1
end

local function utf8(code)
   if code < 0x80 then return string.char(code) end
   if code < 0x800 then
      return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
   end
   return string.char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

local value -- forward declaration

local function str(s, i) -- s:sub(i, i) == '"'
   local out, j = {}, i + 1
   while true do
      local c = s:sub(j, j)
      if c == '' then fail(s, j, 'unterminated string') end
      if c == '"' then return table.concat(out), j + 1 end
      if c == '\\' then
         local e = s:sub(j + 1, j + 1)
         if e == 'u' then
            local hex = s:sub(j + 2, j + 5)
            if not hex:match('^%x%x%x%x$') then fail(s, j, 'bad \\u escape') end
            out[#out + 1] = utf8(tonumber(hex, 16))
            j = j + 6
         elseif escapes[e] then
            out[#out + 1] = escapes[e]
            j = j + 2
         else
            fail(s, j, 'bad escape')
         end
      else
         local k = s:find('["\\]', j) or #s + 1
         out[#out + 1] = s:sub(j, k - 1)
         j = k
      end
   end
end

local function list(s, i) -- s:sub(i, i) == '['
   local out, n = {}, 0
   i = skip(s, i + 1)
   if s:sub(i, i) == ']' then return out, i + 1 end
   while true do
      local v
      v, i = value(s, i)
      n = n + 1
      out[n] = v
      i = skip(s, i)
      local c = s:sub(i, i)
      if c == ']' then return out, i + 1 end
      if c ~= ',' then fail(s, i, "expected ',' or ']'") end
      i = skip(s, i + 1)
   end
end

local function object(s, i) -- s:sub(i, i) == '{'
   local out = {}
   i = skip(s, i + 1)
   if s:sub(i, i) == '}' then return out, i + 1 end
   while true do
      if s:sub(i, i) ~= '"' then fail(s, i, 'expected a key') end
      local k
      k, i = str(s, i)
      i = skip(s, i)
      if s:sub(i, i) ~= ':' then fail(s, i, "expected ':'") end
      out[k], i = value(s, skip(s, i + 1))
      i = skip(s, i)
      local c = s:sub(i, i)
      if c == '}' then return out, i + 1 end
      if c ~= ',' then fail(s, i, "expected ',' or '}'") end
      i = skip(s, i + 1)
   end
end

function value(s, i)
   local c = s:sub(i, i)
   if c == '{' then return object(s, i) end
   if c == '[' then return list(s, i) end
   if c == '"' then return str(s, i) end
   if s:sub(i, i + 3) == 'true' then return true, i + 4 end
   if s:sub(i, i + 4) == 'false' then return false, i + 5 end
   if s:sub(i, i + 3) == 'null' then return json.NULL, i + 4 end
   local num = s:match('^-?%d+%.?%d*[eE]?[-+]?%d*', i)
   if num and num ~= '' and tonumber(num) then return tonumber(num), i + #num end
   fail(s, i, 'unexpected ' .. (c == '' and 'end of input' or ("'" .. c .. "'")))
end

--- Parses JSON text: json.parse{data='{"a":1}'}.a == 1
function json.parse(args)
   local s = assert(args and args.data, 'json.parse: data is required')
   local v, i = value(s, skip(s, 1))
   if skip(s, i) <= #s then fail(s, skip(s, i), 'trailing characters') end
   return v
end

local function quote(s)
   return '"' .. s:gsub('[%c"\\]', function(c)
      local named = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
      return named[c] or ('\\u%04x'):format(c:byte())
   end) .. '"'
end

local function encode(v, out)
   local t = type(v)
   if v == json.NULL or v == nil then
      out[#out + 1] = 'null'
   elseif t == 'boolean' then
      out[#out + 1] = tostring(v)
   elseif t == 'number' then
      out[#out + 1] = (v == math.floor(v) and math.abs(v) < 2^53) and ('%d'):format(v) or ('%.17g'):format(v)
   elseif t == 'string' then
      out[#out + 1] = quote(v)
   elseif t == 'table' then
      if #v > 0 or next(v) == nil then -- a sequence (an empty table becomes [])
         out[#out + 1] = '['
         for k = 1, #v do
            if k > 1 then out[#out + 1] = ',' end
            encode(v[k], out)
         end
         out[#out + 1] = ']'
      else
         local keys = {}
         for k in pairs(v) do keys[#keys + 1] = tostring(k) end
         table.sort(keys)
         out[#out + 1] = '{'
         for n, k in ipairs(keys) do
            if n > 1 then out[#out + 1] = ',' end
            out[#out + 1] = quote(k) .. ':'
            encode(v[k], out)
         end
         out[#out + 1] = '}'
      end
   else
      error('json.serialize: cannot encode a ' .. t, 0)
   end
end

--- Serialises a Lua value: json.serialize{data={tenantId='x'}} == '{"tenantId":"x"}'
function json.serialize(args)
   local out = {}
   encode(args.data, out)
   return table.concat(out)
end

return json
