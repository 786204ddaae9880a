-- The JSON decoder of the C core (core.json_decode, and the session's decoding of 2xx object
-- answers): RFC 8259 grammar, Lua integers for integral numbers, null as nil or a sentinel,
-- bounded depth and size, messages that name a place but never echo the text, and the
-- member-name cache that must never keep anything but plain names.
local core = require "flowmusic.core"
local cjson = require("cjson").new()

local decode = core.json_decode
local has_integers = math.type ~= nil

-- math.type where there is one ("integer"/"float"), else "number".
local function numtype(v)
  if has_integers then return math.type(v) end
  return type(v)
end

local function ok(text, ...)
  local v, err, kind = decode(text, ...)
  assert(err == nil, ("%q: %s (%s)"):format(text:sub(1, 80), tostring(err), tostring(kind)))
  return v
end

local function refused(text, ...)
  local v, err, kind = decode(text, ...)
  assert(v == nil and type(err) == "string", ("%q decoded"):format(text:sub(1, 80)))
  return err, kind
end

describe("core.json_decode", function()
  it("decodes objects, arrays and scalars", function()
    assert.same({ a = { 1, 2, { b = true } }, c = "d", e = false }, ok('{"a":[1,2,{"b":true}],"c":"d","e":false}'))
    assert.same({}, ok("[]"))
    assert.same({}, ok("{}"))
    assert.equal("x", ok('"x"'))
    assert.equal(true, ok("true"))
    assert.equal(false, ok(" false "))
    assert.equal(12, ok("\t\r\n 12 \n"))
  end)

  it("reads every escape, surrogate pairs included, and raw bytes as they are", function()
    assert.equal('"\\/\b\f\n\r\t', ok('"\\"\\\\\\/\\b\\f\\n\\r\\t"'))
    assert.equal("é€", ok('"\\u00e9\\u20AC"'))
    assert.equal("😀", ok('"\\ud83d\\ude00"'))
    assert.equal("a\0b", ok('"a\\u0000b"'))
    assert.equal("a\127b\255", ok('"a\127b\255"'))
    assert.equal(("x"):rep(5000) .. "\n", ok('"' .. ("x"):rep(5000) .. '\\n"'))
  end)

  it("refuses raw control characters in strings (RFC 8259 section 7), at their byte", function()
    -- JSONTestSuite's n_string_unescaped_ctrl_char, n_string_unescaped_newline, n_string_unescaped_tab
    for text, at in pairs { ['["a\0a"]'] = 4, ['["new\nline"]'] = 6, ['["\t"]'] = 3 } do
      local err, kind = refused(text)
      assert.equal("syntax", kind)
      assert.truthy(err:find("control character 0x%x%x in a string at byte " .. at .. "$"), err)
    end
    for c = 0, 31 do -- every one, in values, names, after an escape, and past the first quote found
      for _, text in ipairs { '"' .. string.char(c) .. '"', '{"a' .. string.char(c) .. '":1}',
        '["\\n' .. string.char(c) .. '"]', '"x' .. string.char(c) } do
        assert.equal("syntax", select(2, refused(text)), ("%q"):format(text))
      end
    end
    assert.equal(" \127\255", ok('"\\u0020\127\255"'))
  end)

  it("refuses bad escapes and lone surrogates", function()
    for _, text in ipairs { '"\\x"', '"\\u12"', '"\\ud800"', '"\\udc00"', '"\\ud800\\u0041"', '"\\', '"abc' } do
      local err, kind = refused(text)
      assert.equal("syntax", kind)
      assert.truthy(err:find("byte %d+"), err)
    end
  end)

  it("gives integers for integral numbers and floats for the rest", function()
    local doc = ok('{"i":5000,"n":-7,"z":-0,"big":999999999999999999,"f":2.5,"e":1.5e3,"w":5.0,"tiny":1e-7}')
    assert.equal(5000, doc.i)
    assert.equal(-7, doc.n)
    assert.equal(0, doc.z)
    assert.equal(2.5, doc.f)
    assert.equal(1500, doc.e)
    assert.equal(5, doc.w)
    assert.equal(1e-7, doc.tiny)
    if has_integers then
      assert.equal(999999999999999999, doc.big) -- exact: 18 digits
      for _, k in ipairs { "i", "n", "z", "big", "e", "w" } do assert.equal("integer", numtype(doc[k]), k) end
      assert.equal("float", numtype(doc.f))
    end
  end)

  it("keeps numbers too large for an integer as floats", function()
    assert.equal(tonumber("12345678901234567890.0"), ok("12345678901234567890"))
    assert.equal(tonumber("123456789012345678901234.0"), ok("123456789012345678901234"))
    if has_integers then assert.equal("float", numtype(ok("12345678901234567890"))) end
  end)

  it("follows the number grammar", function()
    for _, text in ipairs { "01", "-", "1.", ".5", "+1", "1e", "1e+", "0x10", "-a", "1.e3", "--1" } do
      local _, kind = refused(text)
      assert.equal("syntax", kind, text)
    end
  end)

  it("refuses a number that is not finite, naming its member", function()
    local err, kind = refused('{"x":{"credits_remaining":1e400}}')
    assert.equal("shape", kind)
    assert.equal("number at 'credits_remaining' is not finite", err)
    err, kind = refused("[1,-1e999]")
    assert.equal("shape", kind)
    assert.equal("a number is not finite", err)
    for _, text in ipairs { "NaN", "Infinity", "-Infinity", "[nan]" } do
      assert.equal("syntax", select(2, refused(text)), text)
    end
  end)

  it("makes null nil (an absent member, a hole) or the given sentinel", function()
    local doc = ok('{"a":null,"b":[1,null,3],"c":1}')
    assert.is_nil(doc.a)
    assert.equal(1, doc.b[1])
    assert.is_nil(doc.b[2])
    assert.equal(3, doc.b[3])
    doc = ok('{"a":null,"b":[null]}', core.null)
    assert.equal(core.null, doc.a)
    assert.equal(core.null, doc.b[1])
    assert.is_nil(ok("null"))
    local sentinel = {}
    assert.equal(sentinel, ok("[null]", sentinel)[1])
  end)

  it("keeps the last of repeated member names", function()
    assert.same({ a = 3, b = 2 }, ok('{"a":1,"b":2,"a":3}'))
  end)

  it("builds large arrays and objects whole (past its 32-item chunks)", function()
    local list, obj = {}, {}
    for i = 1, 1000 do
      list[i] = i % 7 == 0 and "s" .. i or i
      obj["k" .. i] = { i, tostring(i) }
    end
    assert.same(list, ok(cjson.encode(list)))
    assert.same(obj, ok(cjson.encode(obj)))
    local holes = ok("[" .. ("null,"):rep(99) .. "1]")
    assert.equal(1, holes[100])
    for i = 1, 99 do assert.is_nil(holes[i]) end
  end)

  it("skips a leading UTF-8 byte order mark, and nothing else", function()
    assert.same({ a = 1 }, ok('\239\187\191{"a":1}'))
    assert.equal("syntax", select(2, refused('\239\187{"a":1}')))
  end)

  it("refuses trailing text, empty text and stray separators", function()
    for _, text in ipairs { "", "  ", "[1]x", "{} {}", "[1,]", '{"a":1,}', '{"a" 1}', '{a:1}', "[1 2]", "tru", "nul" } do
      assert.equal("syntax", select(2, refused(text)), text)
    end
  end)

  it("bounds the depth (128 levels) before recursing further", function()
    assert.is_table(ok(("["):rep(128) .. ("]"):rep(128)))
    local err, kind = refused(("["):rep(129) .. ("]"):rep(129))
    assert.equal("syntax", kind)
    assert.equal("nested deeper than 128 levels", err)
    assert.equal("syntax", select(2, refused(("[{\"a\":"):rep(100) .. "1" .. ("}]"):rep(100))))
  end)

  it("bounds the number of values (max_values)", function()
    assert.is_table(ok("[1,2,3]", nil, 4))
    local err, kind = refused("[1,2,3,4,5]", nil, 4)
    assert.equal("too_large", kind)
    assert.truthy(err:find("more than 4 JSON values", 1, true), err)
    assert.equal("too_large", select(2, refused(("[]"):rep(1) .. "", nil, 1)))
    assert.is_table(ok("[1,2,3,4,5]", nil, 0)) -- 0: no bound
  end)

  it("counts a large body before building it, with the same count and messages", function()
    local wide = "[" .. ("[],"):rep(100000) .. "[]]" -- 300 KB: counted first
    local err, kind = refused(wide, nil, 1000)
    assert.equal("too_large", kind)
    assert.truthy(err:find("more than 1000 JSON values", 1, true), err)
    assert.equal(100001, #ok(wide, nil, 200003)) -- 1 + 100002 opens + 100000 commas: just fits
    assert.equal("too_large", select(2, refused(wide, nil, 200002)))
    local escaped = '["' .. ('\\"[,'):rep(30000) .. '",1]' -- brackets and commas inside a string
    assert.equal(2, #ok(escaped, nil, 3))
    err, kind = refused(("["):rep(200) .. (" "):rep(70000) .. ("]"):rep(200), nil, 1000000)
    assert.same({ "nested deeper than 128 levels", "syntax" }, { err, kind })
  end)

  it("refuses what is not an object when an object is wanted, saying what it got", function()
    assert.same({ "expected a JSON object, got an array", "shape" }, { select(2, decode("[1]", nil, 0, true)) })
    assert.same({ "expected a JSON object, got a string", "shape" }, { select(2, decode(' "x"', nil, 0, true)) })
    assert.same({ "expected a JSON object, got a number", "shape" }, { select(2, decode("12", nil, 0, true)) })
    assert.same({ "expected a JSON object, got null", "shape" }, { select(2, decode("null", nil, 0, true)) })
    assert.same({ "expected a JSON object, got a boolean", "shape" }, { select(2, decode("false ", nil, 0, true)) })
    -- valid JSON first: a broken text is a syntax error whatever its first byte
    assert.equal("syntax", select(3, decode("nul", nil, 0, true)))
    assert.equal("syntax", select(3, decode("[1", nil, 0, true)))
    assert.equal("syntax", select(3, decode("", nil, 0, true)))
    assert.equal("syntax", select(3, decode("<html>", nil, 0, true)))
    assert.equal("syntax", select(3, decode("\0", nil, 0, true)))
    assert.same({ a = 1 }, ok('{"a":1}', nil, 0, true))
  end)

  it("never echoes more than one byte of the text in a message, nor a name that is not plain", function()
    local secret = "user:1-SECRETSECRET"
    for _, text in ipairs { '{"t":"' .. secret .. '"', '{"t":"' .. secret .. '"]', '["' .. secret .. '",' .. secret .. "]",
      secret, '{"' .. secret .. '":1e999}' } do
      local err = refused(text)
      assert.is_nil(err:find("SECRET", 1, true), err)
    end
  end)

  it("shows an unprintable byte in hex", function()
    local err = refused("[\1]")
    assert.truthy(err:find("byte 0x01 at byte 2", 1, true), err)
  end)

  it("decodes what lua-cjson encodes, as lua-cjson decodes it (integral numbers aside)", function()
    math.randomseed(19)
    local function value(depth)
      local r = math.random(depth > 3 and 5 or 7)
      if r == 1 then return math.random(-1e6, 1e6)
      elseif r == 2 then return math.random() * 1e6 - 5e5
      elseif r == 3 then
        local t = {}
        for i = 1, math.random(0, 12) do t[i] = string.char(math.random(0, 255)) end
        return table.concat(t)
      elseif r == 4 then return math.random(2) == 1
      elseif r == 5 then return "k" .. math.random(100)
      elseif r == 6 then
        local t = {}
        for i = 1, math.random(0, 6) do t[i] = value(depth + 1) end
        return t
      else
        local t = {}
        for _ = 1, math.random(0, 6) do t["n" .. math.random(50) .. string.char(math.random(32, 126))] = value(depth + 1) end
        return t
      end
    end
    local function same(a, b)
      if type(a) ~= type(b) then return false end
      if type(a) ~= "table" then return a == b end
      for k, v in pairs(a) do if not same(v, b[k]) then return false end end
      for k in pairs(b) do if a[k] == nil then return false end end
      return true
    end
    for i = 1, 400 do
      local text = cjson.encode({ v = value(0) })
      local mine, expected = ok(text), cjson.decode(text)
      assert(same(mine, expected), ("case %d: %s"):format(i, text))
    end
  end)
end)

describe("the member-name cache", function()
  -- Every string reachable from the registry (where the cache keeps its strings).
  local function registry_strings()
    local seen, found = {}, {}
    local function walk(v, depth)
      if type(v) == "string" then found[#found + 1] = v return end
      if type(v) ~= "table" or seen[v] or depth > 12 then return end
      seen[v] = true
      for k, x in next, v do
        walk(k, depth + 1)
        walk(x, depth + 1)
      end
    end
    walk(debug.getregistry(), 0)
    return found
  end

  it("gives right names through collisions and evictions", function()
    for round = 1, 3 do
      local doc = {}
      for i = 1, 600 do doc["name_" .. i .. "_" .. round] = i end
      doc.email, doc.maxJobs = "a@x.com", round
      assert.same(doc, ok(cjson.encode(doc)))
    end
  end)

  it("keeps only plain names: never one with a token's characters, never a value", function()
    local secret_name = "user:77-NAMESECRETabcdef"
    local doc = ok('{"' .. secret_name .. '":1,"plain_name_xyz":"VALUESECRETqrstuv","tok":"user:88-VALUE2SECRET"}')
    assert.equal(1, doc[secret_name])
    doc = nil -- luacheck: ignore 311
    collectgarbage()
    local all = table.concat(registry_strings(), "\n")
    assert.truthy(all:find("plain_name_xyz", 1, true)) -- the walk does see the cache
    assert.is_nil(all:find("NAMESECRET", 1, true))
    assert.is_nil(all:find("VALUESECRET", 1, true))
    assert.is_nil(all:find("VALUE2SECRET", 1, true))
  end)
end)

describe("session:poll with a reused completion table", function()
  local sandbox = require "spec.helpers.sandbox"
  local sb, session, account
  setup(function()
    sb = sandbox.start()
    sb:seed(1)
    session = core.session { token = sb.token, connect_timeout_ms = 5000, max_response_bytes = 1e6 }
    account = sb.base_url .. "/accounts/seed-01%40sandbox.test"
  end)
  teardown(function()
    session:close()
    sb:stop()
  end)

  -- Run one request to its completion, written into c.
  local function exchange(c, request)
    assert(session:start(1, request, 5))
    local got
    for _ = 1, 100 do
      got = session:poll(0.1, c, core.null, 1000)
      if got then break end
    end
    assert.equal(c, got)
    return c
  end

  it("hands an object answer over decoded, and clears what an earlier completion left", function()
    local c = {}
    exchange(c, { method = "GET", url = sb.base_url .. "/accounts/nobody%40x.com", answer = "object" })
    assert.equal(404, c.status)
    assert.is_string(c.body)
    assert.is_string(c.head)
    assert.is_true(c.sent)
    c.headers = {} -- what the Lua layer adds: not the session's to clear
    exchange(c, { method = "GET", url = account, answer = "object" })
    assert.equal(200, c.status)
    assert.equal(0, c.code)
    assert.equal("seed-01@sandbox.test", c.doc.email)
    for _, k in ipairs { "body", "head", "sent", "message", "too_large", "out_of_memory", "decode_error", "decode_kind" } do
      assert.is_nil(c[k], k)
    end
    exchange(c, { method = "GET", url = account })
    assert.is_nil(c.doc)
    assert.truthy(c.body:find('"email"', 1, true))
  end)

  it("reports an answer that does not decode, and a transport failure, with only their fields", function()
    local c = {}
    sb:fault { fault = "invalid_json", method = "GET", path = "/v1/flowmusic/accounts/seed-01%40sandbox.test", count = 1 }
    exchange(c, { method = "GET", url = account, answer = "object" })
    assert.equal(200, c.status)
    assert.is_nil(c.doc)
    assert.equal("syntax", c.decode_kind)
    assert.is_string(c.decode_error)
    exchange(c, { method = "GET", url = "http://127.0.0.1:" .. require("spec.helpers.client").closed_port() .. "/x", answer = "object" })
    assert.is_true(c.code ~= 0)
    assert.is_string(c.message)
    assert.equal("", c.body)
    assert.is_nil(c.decode_error)
    assert.is_nil(c.decode_kind)
    assert.is_nil(c.doc)
  end)
end)
