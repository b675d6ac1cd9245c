-- wrk script: stateless 2026-07-28 `tools/call` POSTs, `variants` distinct arguments cycled, every response
-- checked (status 200, the echoed text back, no tool error). Args: TOOL VARIANTS [PROTOCOL]: with an older
-- PROTOCOL (e.g. 2025-11-25, for a peer whose SDK predates 2026-07-28) the same request in that era's
-- stateless form, without the 2026 `_meta` envelope.
local bodies, n, threads = {}, 0, {}
failures = 0 -- a global: done() reads it from each thread

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local tool, variants, protocol = args[1], tonumber(args[2]) or 1, args[3] or "2026-07-28"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  wrk.headers["MCP-Protocol-Version"] = protocol
  wrk.headers["Mcp-Method"] = "tools/call"
  wrk.headers["Mcp-Name"] = tool
  local meta = ''
  if protocol == "2026-07-28" then
    meta = ',"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
      .. '"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"0"},'
      .. '"io.modelcontextprotocol/clientCapabilities":{}}'
  end
  for i = 1, variants do
    local body = '{"jsonrpc":"2.0","id":' .. i .. ',"method":"tools/call","params":{"name":"' .. tool
      .. '","arguments":{"text":"hello-' .. i .. '"}' .. meta .. '}}'
    bodies[i] = wrk.format(nil, nil, nil, body)
  end
end

function request()
  n = n + 1
  return bodies[(n % #bodies) + 1]
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, "hello-", 1, true) or string.find(body, '"isError":true', 1, true) then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
  end
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"seconds":%f,"failures":%d,"socket_errors":%d,"p50_us":%d}\n',
    summary.requests, summary.duration / 1e6, failed, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50)))
end
