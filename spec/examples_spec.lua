-- The network examples, each run as a child process and driven by clients that were
-- not written for tether: curl (HTTP), redis-cli and redis-benchmark (RESP), socat
-- (the chat).  `make test` installs them; a missing one makes its tests pending.
local helper = require "spec.helper"

local function have(program)
  return os.execute("command -v " .. program .. " >/dev/null 2>&1") == true
end

-- `it` when every program is installed, else a pending test that names the missing one.
local function it_with(programs, description, fn)
  for _, program in ipairs(programs) do
    if not have(program) then
      pending(("%s (%s is not installed; `make test` installs it)"):format(description, program))
      return
    end
  end
  it(description, fn)
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Bash run before each test's own lines: starts `lua5.4 examples/<name> 0 <args>` with
-- its output in $out, waits until it listens, and sets $port and $pid.  wait_for
-- PATTERN FILE polls for a line, for at most $limit tries 0.05 s apart.  The server
-- gets this process's LD_PRELOAD (the sanitizer runtime under `make check`); the
-- clients do not.
local PROLOGUE = [[
set -u
dir=$(mktemp -d)
out=$dir/server.out
trap 'kill -9 $pid 2>/dev/null; rm -rf "$dir"' EXIT
limit=$((400 * TIME_SCALE))
wait_for() {
  local i=0
  until grep -q -- "$1" "$2" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt $limit ]; then echo "timed out waiting for '$1' in $2"; return 1; fi
    sleep 0.05
  done
}
LD_PRELOAD=$SERVER_PRELOAD LUA_PATH_5_4=$SERVER_PATH LUA_CPATH_5_4=$SERVER_CPATH \
  "$LUA" "examples/$EXAMPLE" 0 "$@" >"$out" 2>&1 &
pid=$!
wait_for "^listening on 127.0.0.1:" "$out" || { cat "$out"; exit 1; }
port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$out")
]]

-- Stops the server with SIGTERM (unless the test did) and reports its exit status and output.
local EPILOGUE = [[
if kill -TERM $pid 2>/dev/null; then
  wait $pid
  echo "status: $?"
fi
echo "=== server output"
cat "$out"
]]

-- Runs PROLOGUE, `body` and EPILOGUE under bash; returns the combined output.
local function drive(example, args, body)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(PROLOGUE, body, EPILOGUE)
  f:close()
  local seconds = math.ceil(120 * helper.time_scale)
  local cmd = ("exec env -u LD_PRELOAD SERVER_PRELOAD=\"${LD_PRELOAD-}\" SERVER_PATH=%s "
    .. "SERVER_CPATH=%s LUA=%s EXAMPLE=%s TIME_SCALE=%d timeout -k 5 %d bash %s %s "
    .. "</dev/null 2>&1")
    :format(shell_quote(package.path), shell_quote(package.cpath), shell_quote(helper.lua5_4),
            example, math.ceil(helper.time_scale), seconds, path, args)
  local p = assert(io.popen(cmd))
  local output = p:read("a")
  p:close()
  os.remove(path)
  return output
end

local function count(haystack, needle)
  local n, at = 0, 1
  while true do
    local s, e = haystack:find(needle, at, true)
    if not s then return n end
    n, at = n + 1, e + 1
  end
end

describe("examples/http_hello.lua", function()
  it_with({ "curl" }, "answers two requests over one keep-alive connection (curl)", function()
    local out = drive("http_hello.lua", "", [[
timeout 20 curl -s -v "http://127.0.0.1:$port/" "http://127.0.0.1:$port/hello" 2>&1
echo "curl: $?"
]])
    assert.matches("curl: 0\n", out, 1, true)
    assert.matches("Re-using existing connection", out, 1, true)
    assert.equal(2, count(out, "< HTTP/1.1 200 OK"), out)
    assert.equal(2, count(out, "< Content-Length: 13"), out)
    assert.equal(2, count(out, "Hello, world!"), out)
    assert.matches("status: 0\n", out, 1, true)
  end)

  it_with({ "curl" }, "closes the connection after a request with Connection: close",
    function()
      local out = drive("http_hello.lua", "", [[
url="http://127.0.0.1:$port/"
timeout 20 curl -s -v -H 'Connection: close' "$url" "$url" 2>&1
echo "curl: $?"
]])
      assert.matches("curl: 0\n", out, 1, true)
      assert.equal(2, count(out, "< Connection: close"), out)
      assert.equal(2, count(out, "Hello, world!"), out)
      assert.not_matches("Re-using existing connection", out, 1, true)
    end)

  it("answers 400 to a malformed request line and closes; exits 0 on SIGTERM", function()
    local out = drive("http_hello.lua", "", [[
exec 3<>"/dev/tcp/127.0.0.1/$port"
# one line, one write: a second one arriving after the server closed would be reset
printf 'NOT HTTP AT ALL\r\n' >&3
timeout 10 cat <&3
echo "cat: $?"
exec 3>&-
]])
    assert.matches("^HTTP/1.1 400 Bad Request\r\n", out:match("HTTP/1.1 .*") or out)
    assert.matches("Connection: close\r\n", out, 1, true)
    assert.matches("cat: 0\n", out, 1, true) -- the server closed: cat saw the end
    assert.matches("status: 0\n", out, 1, true)
    assert.matches("stopping", out, 1, true)
  end)
end)

describe("examples/resp_server.lua", function()
  it_with({ "redis-cli" }, "answers redis-cli like Redis does", function()
    local out = drive("resp_server.lua", "", [[
cli() { echo "> $*"; timeout 10 redis-cli -p "$port" "$@"; }
cli ping
cli ping hello
cli echo "two words"
cli set greeting hello
cli get greeting
cli get missing
cli incr greeting
cli set counter 41
cli incr counter
cli get counter
cli del counter greeting missing
cli exists counter
cli rpush list a b c
cli lrange list 0 -1
cli get list
cli incr list
cli get
cli frobnicate a b
echo "> inline"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'PING\r\nECHO inline\r\n' >&3
read -r -t 10 one <&3; read -r -t 10 two <&3; read -r -t 10 three <&3
echo "$one $two $three" | tr -d '\r'
exec 3>&-
]])
    local transcript = out:match("^(.-)status: ") or out
    assert.equal(table.concat({
      "> ping", "PONG",
      "> ping hello", "hello",
      "> echo two words", "two words",
      "> set greeting hello", "OK",
      "> get greeting", "hello",
      "> get missing", "",
      "> incr greeting", "ERR value is not an integer or out of range", "",
      "> set counter 41", "OK",
      "> incr counter", "42",
      "> get counter", "42",
      "> del counter greeting missing", "2",
      "> exists counter", "0",
      "> rpush list a b c", "3",
      "> lrange list 0 -1", "a", "b", "c",
      "> get list", "WRONGTYPE Operation against a key holding the wrong kind of value", "",
      "> incr list", "WRONGTYPE Operation against a key holding the wrong kind of value", "",
      "> get", "ERR wrong number of arguments for 'get' command", "",
      "> frobnicate a b",
      "ERR unknown command 'frobnicate', with args beginning with: 'a' 'b' ", "",
      "> inline", "+PONG $6 inline", "",
    }, "\n"), transcript)
    assert.matches("status: 0\n", out, 1, true)
  end)

  it_with({ "redis-benchmark", "redis-cli" },
    "serves redis-benchmark, one request at a time and pipelined (-P 16)", function()
      local out = drive("resp_server.lua", "", [[
for pipeline in 1 16; do
  echo "=== -P $pipeline"
  timeout 60 redis-benchmark -p "$port" -t ping,set,get -n 2000 -c 10 -P $pipeline -q 2>&1 |
    tr '\r' '\n' | grep 'requests per second'
  echo "benchmark: ${PIPESTATUS[0]}"
done
echo "value: $(timeout 10 redis-cli -p "$port" get key:__rand_int__)"
]])
      for _, pipeline in ipairs({ "1", "16" }) do
        local part = out:match("=== %-P " .. pipeline .. "\n(.-)benchmark: %d+") or ""
        for _, test in ipairs({ "PING_INLINE", "PING_MBULK", "SET", "GET" }) do
          assert.matches("\n?" .. test .. ": [%d.]+ requests per second", part)
        end
      end
      assert.equal(2, count(out, "benchmark: 0\n"), out)
      -- What its SETs stored: a value of its default size, 3 bytes.
      assert.matches("\nvalue: %S%S%S\n", out)
      assert.matches("status: 0\n", out, 1, true)
    end)
end)

describe("examples/chat_server.lua", function()
  it_with({ "socat" }, "relays lines between clients, reloads the banner on SIGHUP, and "
    .. "says goodbye on SIGTERM", function()
      local banner = os.tmpname()
      local f = assert(io.open(banner, "w"))
      f:write("welcome, first edition\n")
      f:close()
      local out = drive("chat_server.lua", shell_quote(banner), [[
# client NAME: a socat client whose input is the fifo $dir/NAME.in (kept open on
# descriptor 4, 5 or 6) and whose output is $dir/NAME.out.
client() {
  mkfifo "$dir/$1.in"
  timeout 60 socat - "TCP:127.0.0.1:$port" <"$dir/$1.in" >"$dir/$1.out" &
}
client a; exec 4>"$dir/a.in"
wait_for "you are guest1" "$dir/a.out"
client b; exec 5>"$dir/b.in"
wait_for "you are guest2" "$dir/b.out"
wait_for "guest2 joined" "$dir/a.out"
echo "hello from a" >&4
wait_for "guest1: hello from a" "$dir/b.out"
echo "hello from b" >&5
wait_for "guest2: hello from b" "$dir/a.out"
echo "welcome, second edition" >"$1" # the banner file
kill -HUP $pid
wait_for "banner reloaded" "$out"
client c; exec 6>"$dir/c.in"
wait_for "you are guest3" "$dir/c.out"
kill -TERM $pid
wait $pid
echo "status: $?"
for name in a b c; do
  wait_for "server shutting down" "$dir/$name.out"
  echo "=== $name"; cat "$dir/$name.out"
done
exec 4>&- 5>&- 6>&-
wait
]])
      os.remove(banner)
      local function seen_by(name)
        return out:match("=== " .. name .. "\n(.-)\n===") or out:match("=== " .. name .. "\n(.*)$")
      end
      local a, b, c = seen_by("a"), seen_by("b"), seen_by("c")
      assert.is_not_nil(a, out)
      assert.equal(table.concat({
        "welcome, first edition", "* you are guest1", "* guest2 joined",
        "guest2: hello from b", "* guest3 joined", "server shutting down",
      }, "\n"), a)
      assert.equal(table.concat({
        "welcome, first edition", "* you are guest2", "guest1: hello from a",
        "* guest3 joined", "server shutting down",
      }, "\n"), b)
      assert.equal(table.concat({
        "welcome, second edition", "* you are guest3", "server shutting down",
      }, "\n"), c)
      assert.matches("status: 0\n", out, 1, true)
    end)
end)
