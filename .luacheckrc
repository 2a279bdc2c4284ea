-- luacheck configuration (luacheck lua spec examples bench).
std = "lua54"
max_line_length = 100
exclude_files = { "build/", "build-asan/", "lua_modules/", ".luarocks/" }

-- A leading "_" marks a variable unused on purpose, e.g. `local _guard <close> = ...`
-- (luacheck 1.1 counts a to-be-closed variable that is never read as unused).
ignore = { "211/_.*", "212/_.*", "213/_.*" }

-- The library and its specs never print; examples and benchmarks may.
not_globals = { "print" }

files["spec/"] = { std = "+busted" }
files["examples/"] = { read_globals = { "print" } }
files["bench/"] = { read_globals = { "print" } }

-- The seed program of API.md section 1, kept verbatim: its `for` handles one signal
-- and returns (W512: loop is executed at most once).
files["examples/shutdown.lua"] = { ignore = { "512" } }
