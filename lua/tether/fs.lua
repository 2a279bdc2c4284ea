--- Files and directories by path (`tether.fs`), off the loop: each call runs
-- in libuv's thread pool and is a checkpoint. The core does one request per
-- call; this module adds what takes several: mkdir with parents, recursive
-- remove, and the options of write_file.
-- @module tether.fs

local core = require "tether.core"
local errors = require "tether.errors"

local fs = {}

local is, OSError = errors.is, errors.OSError

local function misuse(fname, fmt, ...)
  error(fname .. ": " .. fmt:format(...), 0)
end

local function check_path(fname, path)
  if type(path) ~= "string" then
    misuse(fname, "path must be a string, got %s", type(path))
  end
end

local function check_opts(fname, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then misuse(fname, "options must be a table, got %s", type(opts)) end
  for k in pairs(opts) do
    if not known[k] then misuse(fname, "unknown option %s", tostring(k)) end
  end
  return opts
end

local function has_code(err, code)
  return is(err, OSError) and err.code == code
end

fs.read_file = core.fs_read_file
fs.stat = core.fs_stat
fs.lstat = core.fs_lstat
fs.exists = core.fs_exists
fs.rename = core.fs_rename
fs.copy = core.fs_copy
fs.symlink = core.fs_symlink
fs.readlink = core.fs_readlink
fs.realpath = core.fs_realpath
fs.chmod = core.fs_chmod
fs.dir = core.fs_dir
fs.watch = core.fs_watch

function fs.write_file(path, data, opts)
  opts = check_opts("tether.fs.write_file", opts, { atomic = true })
  return core.fs_write_file(path, data, opts.atomic and true or false)
end

-- The directory a path is in ("." for a bare name), or nil at the root.
local function parent_of(path)
  local dir = path:match("^(.*[^/])/+[^/]+$")
  if dir then return dir end
  if path:match("^/+[^/]+$") then return "/" end
  if not path:find("/", 1, true) then return "." end
  return nil
end

local function mkdir_parents(path, mode)
  local ok, err = pcall(core.fs_mkdir, path, mode)
  if ok then return true end
  if has_code(err, "EEXIST") then
    if core.fs_stat(path).type == "dir" then return true end
    error(err, 0)
  end
  local parent = has_code(err, "ENOENT") and parent_of(path)
  if not parent or parent == path then error(err, 0) end
  mkdir_parents(parent, mode)
  ok, err = pcall(core.fs_mkdir, path, mode)
  if not ok and not (has_code(err, "EEXIST") and core.fs_stat(path).type == "dir") then
    error(err, 0)
  end
  return true
end

function fs.mkdir(path, opts)
  local fname = "tether.fs.mkdir"
  check_path(fname, path)
  opts = check_opts(fname, opts, { parents = true, mode = true })
  local mode = opts.mode or 511 -- 0777, less the umask
  if math.type(mode) ~= "integer" then misuse(fname, "mode must be an integer") end
  path = path:match("^(.-)/*$")
  if path == "" then path = "/" end
  if opts.parents then return mkdir_parents(path, mode) end
  return core.fs_mkdir(path, mode)
end

local function remove_tree(path)
  if core.fs_lstat(path).type ~= "dir" then return core.fs_unlink(path) end
  for name in core.fs_dir(path) do
    remove_tree(path .. "/" .. name)
  end
  return core.fs_rmdir(path)
end

function fs.remove(path, opts)
  local fname = "tether.fs.remove"
  check_path(fname, path)
  opts = check_opts(fname, opts, { recursive = true })
  if opts.recursive then return remove_tree(path) end
  if core.fs_lstat(path).type == "dir" then return core.fs_rmdir(path) end
  return core.fs_unlink(path)
end

return fs
