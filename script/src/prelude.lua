-- The sandbox of tierkv's script VM (see docs/scripting.md, "The Lua environment").
-- Run once when the VM starts, with `raw`: the Rust functions and the real globals table.
-- Everything here holds what it needs in locals (upvalues), never in globals, so that a
-- script's setfenv cannot change what these functions see.
local raw = ...
local G = raw.G
local error, type, tostring, select, next = error, type, tostring, select, next
local rawget, rawset_, setmetatable_, getmetatable_ = rawget, rawset, setmetatable, getmetatable
local getfenv_, setfenv_, xpcall_, pcall_ = getfenv, setfenv, xpcall, pcall
local loadstring_, string_byte, table_concat = loadstring, string.byte, table.concat
local READONLY = "Attempt to modify a readonly table"
-- The environment of this chunk's functions (mlua may give the chunk its own table).
local PRELUDE_ENV = getfenv_(1)

-- Tables a script may read but not change (Redis 7 makes them readonly).
local protected = {} -- proxy -> the table it shows
local function ro_err() error(READONLY, 2) end
local function readonly(real)
  -- `getmetatable` of a protected table shows a table that is itself read-only, as Redis's
  -- (changing it raises the same error instead of reaching the real metatable).
  local shown = setmetatable_({}, {
    __index = { __index = real, __newindex = ro_err }, __newindex = ro_err, __metatable = false,
  })
  local proxy = setmetatable_({}, { __index = real, __newindex = ro_err, __metatable = shown })
  protected[proxy] = real
  return proxy
end

local R = {
  call = raw.call,
  pcall = raw.pcall,
  sha1hex = raw.sha1hex,
  error_reply = raw.error_reply,
  status_reply = raw.status_reply,
  log = raw.log,
  setresp = raw.setresp,
  set_repl = raw.set_repl,
  acl_check_cmd = raw.acl_check_cmd,
  replicate_commands = function() return true end,
  breakpoint = function() return false end,
  debug = function() end,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REPL_NONE = 0, REPL_AOF = 1, REPL_SLAVE = 2, REPL_REPLICA = 2, REPL_ALL = 3,
  REDIS_VERSION = raw.version, REDIS_VERSION_NUM = raw.version_num,
}

local math = G.math
G.string.rep = raw.rep
math.random = raw.random
math.randomseed = raw.randomseed

-- Redis's pcall: an error table with an `err` string comes back as that string; errors of
-- the Rust functions come back as Redis's would.
local translate = raw.translate
local function pcall_result(ok, ...)
  if ok then return ok, ... end
  local e = translate((...), false)
  if type(e) == "table" then
    local m = rawget(e, "err")
    if type(m) == "string" or type(m) == "number" then return false, m end
  end
  return false, e
end

-- Binary chunks could break the VM: only source is loaded.
local BINARY = "attempt to load a binary chunk"
local function loadstring(s, name)
  if type(s) == "string" and string_byte(s, 1) == 27 then return nil, BINARY end
  return loadstring_(s, name)
end
local function load(reader, name)
  local parts = {}
  if type(reader) ~= "function" then error("bad argument #1 to 'load' (function expected, got " .. type(reader) .. ")", 2) end
  while true do
    local piece = reader()
    if piece == nil or piece == "" then break end
    if type(piece) ~= "string" then return nil, "reader function must return a string" end
    parts[#parts + 1] = piece
  end
  return loadstring(table_concat(parts), name or "=(load)")
end

-- getfenv/setfenv: levels count from the caller; the real globals never leak out.
local GP
local envs_dirty = false
local function level(f)
  if f == nil then return 2 end
  if type(f) == "number" and f > 0 then return f + 1 end
  return f
end
local function getfenv(f)
  local e = getfenv_(level(f))
  if e == G or e == PRELUDE_ENV then return GP end
  return e
end
local function setfenv(f, t)
  if protected[f] then error(READONLY, 2) end
  envs_dirty = true
  local r = setfenv_(level(f), t)
  if r == G or r == PRELUDE_ENV then return GP end
  return r
end
local function rawset(t, k, v)
  if protected[t] then error(READONLY, 0) end
  return rawset_(t, k, v)
end
local function setmetatable(t, mt)
  if protected[t] then error(READONLY, 0) end
  return setmetatable_(t, mt)
end

-- The globals a script sees: Redis's allow list.
local keep = {
  xpcall = true, tostring = true, next = true, assert = true, tonumber = true,
  rawequal = true, collectgarbage = true, getmetatable = true, type = true, select = true,
  unpack = true, gcinfo = true, pairs = true, rawget = true, ipairs = true, _VERSION = true,
  error = true, coroutine = true, string = true, math = true, table = true,
}
for k in next, G do
  if not keep[k] then rawset_(G, k, nil) end
end
-- What a replica could see differently is hidden, so that every replica runs a script the
-- same way: heap figures read as 0, a collector step as unfinished, and objects print with a
-- per-run number instead of their address. (`newproxy` is gone: its finalizers would run
-- whenever the collector decides, in some later run.)
local collectgarbage_, tostring_, string_format = collectgarbage, tostring, string.format
local function weak() return setmetatable_({}, { __mode = "k" }) end
local ids, last_id = weak(), 0
local gc_touched = false
G.collectgarbage = function(opt, arg)
  if opt == nil or opt == "count" then return 0 end
  gc_touched = true
  local r = collectgarbage_(opt, arg)
  if opt == "step" then return false end
  return r
end
G.gcinfo = function() return 0 end
local ADDRESSED = { table = true, ["function"] = true, thread = true, userdata = true }
G.tostring = function(...)
  if select("#", ...) == 0 then error("bad argument #1 to 'tostring' (value expected)", 2) end
  local v = ...
  local t = type(v)
  if ADDRESSED[t] then
    local mt = getmetatable_(v)
    if not (type(mt) == "table" and rawget(mt, "__tostring") ~= nil) then
      local id = ids[v]
      if not id then
        last_id = last_id + 1
        id = last_id
        ids[v] = id
      end
      return t .. ": 0x" .. string_format("%08x", id)
    end
  end
  return tostring_(v)
end
G.pcall = function(f, ...) return pcall_result(pcall_(f, ...)) end
G.xpcall = function(f, h)
  return xpcall_(f, function(e) return h(translate(e, true)) end)
end
G.loadstring, G.load = loadstring, load
G.getfenv, G.setfenv, G.rawset, G.setmetatable = getfenv, setfenv, rawset, setmetatable
local LIBS = { "string", "math", "table", "coroutine", "redis" }
for name, lib in next, raw.libs do
  G[name] = lib
  LIBS[#LIBS + 1] = name
end
G.redis = R
for _, name in next, LIBS do
  rawset_(G, name, readonly(G[name]))
end
local string_mt = getmetatable_("")
string_mt.__index = G.string
string_mt.__metatable = readonly({ __index = G.string })

-- Reading a global that does not exist is an error; so is creating one.
GP = readonly(G)
rawset_(G, "_G", GP)
setmetatable_(G, { __index = function(_, k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
end })
setfenv_(0, GP)

-- The environment every builtin function starts with, to undo a script's setfenv.
local fenvs = {}
local function remember_envs(t)
  for _, v in next, t do
    if type(v) == "function" then fenvs[v] = getfenv_(v) end
  end
end
remember_envs(G)
for _, name in next, LIBS do
  remember_envs(protected[G[name]])
end


-- Function libraries (`FUNCTION LOAD`, `FCALL`), as Redis 7's function engine: while a
-- library loads, its globals are only `redis` = {register_function, log, LOG_*, versions};
-- when its functions are called, the full API (and no KEYS/ARGV: they are arguments).
local loading = nil -- the functions registered so far while a library loads
local function nonexistent(k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 3)
end
local LIB_REDIS = {
  log = raw.log,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REDIS_VERSION = raw.version, REDIS_VERSION_NUM = raw.version_num,
}
local FLAG_NAMES = {
  ["no-writes"] = true, ["allow-oom"] = true, ["allow-stale"] = true, ["no-cluster"] = true,
  ["allow-cross-slot-keys"] = true,
}
local string_find, string_lower = string.find, string.lower
local function reg_fail(msg) error({ err = "ERR " .. msg }, 0) end
local function is_string(v) return type(v) == "string" or type(v) == "number" end
local function read_flags(t)
  local flags, j = {}, 1
  while true do
    local f = t[j]
    if f == nil then return flags end
    if not is_string(f) then return nil end
    f = string_lower(tostring_(f))
    if not FLAG_NAMES[f] then return nil end
    flags[#flags + 1] = f
    j = j + 1
  end
end
local function named_args(t)
  if type(t) ~= "table" then
    reg_fail("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).")
  end
  local name, desc, callback, flags
  for k, v in next, t do
    if not is_string(k) then reg_fail("named argument key given to redis.register_function is not a string") end
    local key = string_lower(tostring_(k))
    if key == "function_name" then
      if not is_string(v) then reg_fail("function_name argument given to redis.register_function must be a string") end
      name = tostring_(v)
    elseif key == "description" then
      if not is_string(v) then reg_fail("description argument given to redis.register_function must be a string") end
      desc = tostring_(v)
    elseif key == "callback" then
      if type(v) ~= "function" then reg_fail("callback argument given to redis.register_function must be a function") end
      callback = v
    elseif key == "flags" then
      if type(v) ~= "table" then reg_fail("flags argument to redis.register_function must be a table representing function flags") end
      flags = read_flags(v)
      if not flags then reg_fail("unknown flag given") end
    else
      reg_fail("unknown argument given to redis.register_function")
    end
  end
  if not name then reg_fail("redis.register_function must get a function name argument") end
  if not callback then reg_fail("redis.register_function must get a callback argument") end
  return name, desc, callback, flags or {}
end
LIB_REDIS.register_function = function(...)
  if not loading then reg_fail("redis.register_function can only be called on FUNCTION LOAD command") end
  local n = select("#", ...)
  local name, desc, callback, flags
  if n < 1 or n > 2 then
    reg_fail("wrong number of arguments to redis.register_function")
  elseif n == 1 then
    name, desc, callback, flags = named_args((...))
  else
    local a, b = ...
    if not is_string(a) then reg_fail("first argument to redis.register_function must be a string") end
    if type(b) ~= "function" then reg_fail("second argument to redis.register_function must be a function") end
    name, callback, flags = tostring_(a), b, {}
  end
  if name == "" or string_find(name, "[^%w_]") then
    reg_fail("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long")
  end
  for _, f in next, loading do
    if f.name == name then reg_fail("Function already exists in the library") end
  end
  loading[#loading + 1] = { name = name, description = desc, callback = callback, flags = flags }
end
setmetatable_(LIB_REDIS, { __index = function(_, k) nonexistent(k) end })
local LIB_REDIS_P = readonly(LIB_REDIS)
local LIBENV = setmetatable_({}, {
  __index = function(_, k)
    if loading then
      if k == "redis" then return LIB_REDIS_P end
    elseif k ~= "KEYS" and k ~= "ARGV" then
      local v = rawget(G, k)
      if v ~= nil then return v end
    end
    nonexistent(k)
  end,
  __newindex = ro_err,
  __metatable = false,
})
protected[LIBENV] = G

-- Runs a library's code; returns ok, error, the functions it registered.
local function load_library(fn)
  loading = {}
  setfenv_(fn, LIBENV)
  local ok, e = xpcall_(fn, raw.handler)
  local registered = loading
  loading = nil
  return ok, e, registered
end
-- Calls one function of a library with KEYS and ARGV as its arguments.
local function call_function(fn, keys, argv)
  return xpcall_(function() return fn(keys, argv) end, raw.handler)
end

local handler = raw.handler
local function run(fn, keys, argv)
  rawset_(G, "KEYS", keys)
  rawset_(G, "ARGV", argv)
  setfenv_(fn, GP)
  return xpcall_(fn, handler)
end
-- After each run; returns whether the script used `collectgarbage` (Rust then resets it).
local function cleanup()
  setfenv_(0, GP)
  if last_id > 0 then ids, last_id = weak(), 0 end
  if envs_dirty then
    -- (Lua refuses setfenv on C functions, so only Lua functions can have changed.)
    for f, e in next, fenvs do pcall_(setfenv_, f, e) end
    envs_dirty = false
  end
  local touched = gc_touched
  gc_touched = false
  return touched
end
return run, cleanup, R, load_library, call_function
