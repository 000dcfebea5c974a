-- wrk script: POST one MCP tools/call per request and check every answer.
--
-- Configured by the harness through the environment (wrk passes it to every thread):
--   BENCH_PATH     request path, default /mcp
--   BENCH_HEADERS  extra headers, one "Name: value" per line (Mcp-Session-Id, MCP-Protocol-Version, ...)
--   BENCH_BODY     JSON-RPC body template; every "__ID__" becomes this request's id: BENCH_ID_BASE plus a
--                  per-thread counter, so ids never repeat within a session (2025-era sessions require it),
--                  not even across the harness's successive wrk runs on one session
--   BENCH_EXPECT   substring a good answer contains (JSON or SSE framing alike), e.g. "result":3
-- A response is bad when its status is not 200, it lacks BENCH_EXPECT, or it carries "isError":true.
-- done() prints one line "BENCH_RESULT {json}" that the harness parses.

local threads = {}
local next_thread = 0

function setup(thread)
   thread:set("thread_index", next_thread)
   next_thread = next_thread + 1
   table.insert(threads, thread)
end

local function split_template(template)
   local parts = {}
   local start = 1
   while true do
      local i, j = string.find(template, "__ID__", start, true)
      if not i then
         table.insert(parts, string.sub(template, start))
         return parts
      end
      table.insert(parts, string.sub(template, start, i - 1))
      start = j + 1
   end
end

function init(args)
   path = os.getenv("BENCH_PATH") or "/mcp"
   expect = os.getenv("BENCH_EXPECT") or '"result"'
   body_parts = split_template(os.getenv("BENCH_BODY") or "")
   headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json, text/event-stream" }
   for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
      local name, value = string.match(line, "^([^:]+):%s*(.-)%s*$")
      if name then headers[name] = value end
   end
   counter = tonumber(os.getenv("BENCH_ID_BASE") or "0") + thread_index * 1000000000
   responses = 0
   bad_status = 0
   bad_body = 0
   first_bad = ""
end

function request()
   counter = counter + 1
   local id = tostring(counter)
   local body = table.concat(body_parts, id)
   return wrk.format("POST", path, headers, body)
end

function response(status, resp_headers, body)
   responses = responses + 1
   if status ~= 200 then
      bad_status = bad_status + 1
      if first_bad == "" then first_bad = status .. " " .. string.sub(body or "", 1, 200) end
   elseif not string.find(body, expect, 1, true) or string.find(body, '"isError":true', 1, true) then
      bad_body = bad_body + 1
      if first_bad == "" then first_bad = status .. " " .. string.sub(body or "", 1, 200) end
   end
end

local function json_string(s)
   s = string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end)
   return '"' .. s .. '"'
end

function done(summary, latency, requests)
   local total_responses, total_bad_status, total_bad_body, sample = 0, 0, 0, ""
   for _, thread in ipairs(threads) do
      total_responses = total_responses + thread:get("responses")
      total_bad_status = total_bad_status + thread:get("bad_status")
      total_bad_body = total_bad_body + thread:get("bad_body")
      if sample == "" then sample = thread:get("first_bad") end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"responses":%d,"bad_status":%d,"bad_body":%d,'
         .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"wrk_status_errors":%d,'
         .. '"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"mean":%.1f,"max":%.1f},"first_bad":%s}\n',
      summary.requests, summary.duration, total_responses, total_bad_status, total_bad_body,
      e.connect, e.read, e.write, e.timeout, e.status,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
      json_string(sample)))
end
