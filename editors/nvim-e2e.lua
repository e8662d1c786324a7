-- A scripted session with Neovim's own LSP client against `rules lsp`
-- (scripts/nvim-lsp-e2e.sh runs it headless). It opens a policy with an
-- error, reads back the diagnostic, hovers a flag, jumps to a definition,
-- fixes the error as if typed, and formats; what it saw goes to $E2E_OUT,
-- one `key: value` per line, for the script to check.
local out = assert(io.open(os.getenv("E2E_OUT"), "w"))
local function say(key, value) out:write(key .. ": " .. tostring(value):gsub("\n", "\\n") .. "\n") end

local client = vim.lsp.start_client({
  cmd = { os.getenv("RULES_BIN"), "lsp" },
  root_dir = vim.fn.getcwd(),
  name = "rules",
})
say("client", client ~= nil)
local buf = vim.api.nvim_get_current_buf()
vim.lsp.buf_attach_client(buf, client)

-- 1. The error in the file comes back as a diagnostic.
vim.wait(5000, function() return #vim.diagnostic.get(buf) > 0 end, 50)
local diags = vim.diagnostic.get(buf)
say("diagnostics", #diags)
if diags[1] then
  say("diagnostic.line", diags[1].lnum)
  say("diagnostic.code", diags[1].code)
  say("diagnostic.message", diags[1].message)
end

local function request(method, line, character)
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    position = { line = line, character = character },
  }
  local results = vim.lsp.buf_request_sync(buf, method, params, 5000) or {}
  for _, r in pairs(results) do if r.result then return r.result end end
  return nil
end

-- 2. Hover over `low trust` where it is read (line 4, 0-based 3).
local hover = request("textDocument/hover", 3, 8)
say("hover", hover and hover.contents and hover.contents.value or "none")

-- 3. Go to the definition of `debtor` read on line 4: where it is set.
local def = request("textDocument/definition", 3, 22)
if def and def.range then say("definition.line", def.range.start.line) else say("definition.line", "none") end

-- 4. Fix the typo as if typed: the diagnostic goes away.
vim.api.nvim_buf_set_lines(buf, 1, 2, false, { "speeding where speed > 90 -> -5" })
vim.wait(5000, function() return #vim.diagnostic.get(buf) == 0 end, 50)
say("diagnostics.after.fix", #vim.diagnostic.get(buf))

-- 5. Format the buffer through the server.
local edits = vim.lsp.buf_request_sync(buf, "textDocument/formatting",
  { textDocument = { uri = vim.uri_from_bufnr(buf) }, options = { tabSize = 2, insertSpaces = true } }, 5000) or {}
for _, r in pairs(edits) do
  if r.result then vim.lsp.util.apply_text_edits(r.result, buf, "utf-16") end
end
say("formatted", table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n"))

vim.lsp.stop_client(client)
out:close()
vim.cmd("qall!")
