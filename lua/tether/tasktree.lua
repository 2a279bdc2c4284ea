-- The task tree: tether.task_tree() (built by the core, see csrc/tasktree.c)
-- and tether.format_task_tree(), the indented text a hung program's
-- TETHER_DUMP_SIGNAL prints.

local core = require "tether.core"

local tasktree = {}

tasktree.task_tree = core.task_tree

local function describe_deadline(deadline)
  if deadline == math.huge then return nil end
  return string.format("deadline %.3f (in %.3f s)", deadline,
    deadline - core.current_time())
end

local function scope_line(node)
  local parts = { node.kind == "group" and "task group" or "cancel scope" }
  parts[#parts + 1] = describe_deadline(node.deadline)
  if node.shield then parts[#parts + 1] = "shielded" end
  if node.cancel_called then parts[#parts + 1] = "cancelled" end
  return table.concat(parts, ", ")
end

local function task_lines(node, indent, out)
  local line = string.format("%stask %d %q: %s", indent, node.id, node.name, node.state)
  if node.waiting_on then line = line .. " on " .. node.waiting_on end
  if node.where then line = line .. " at " .. node.where end
  out[#out + 1] = line
  if node.traceback then
    for frame in node.traceback:gmatch "\n\t([^\n]*)" do
      out[#out + 1] = indent .. "    " .. frame
    end
  end
end

local function node_lines(node, indent, out)
  if node.kind == "task" then
    task_lines(node, indent, out)
    return
  end
  local inner = indent
  if node.kind ~= "run" then
    out[#out + 1] = indent .. scope_line(node)
    inner = indent .. "  "
  end
  for _, child in ipairs(node.children) do
    node_lines(child, inner, out)
  end
end

--- The task tree as indented text: scopes and groups, each task with its
-- state, what it waits on, where, and its traceback.
-- @tparam[opt] table tree a tree from `task_tree` (default: a new one)
-- @treturn string
function tasktree.format_task_tree(tree)
  if tree == nil then
    tree = core.task_tree()
  elseif type(tree) ~= "table" or tree.kind ~= "run" then
    error("tether.format_task_tree: expected a tree from tether.task_tree() or nothing, got "
      .. type(tree), 2)
  end
  local out = { "run" }
  node_lines(tree, "  ", out)
  return table.concat(out, "\n")
end

return tasktree
