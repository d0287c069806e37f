-- POST /v1/login with a code never sent before: the id of this wrk run (BENCH_RUN_ID,
-- which bench/run sets anew for every run), the thread and a counter.
-- Any such code makes the fake WeChat answer with a new user.
--
-- The request's fixed part is built once, in init: wrk's own advice, as building a
-- request with wrk.format on every call costs the load generator more than the
-- server's cheapest requests. Each request adds only its code and the body's length.

local run_id = os.getenv("BENCH_RUN_ID") or tostring(os.time())
local thread_count = 0
local counter = 0
local head, code_prefix

function setup(thread)
   thread:set("thread_id", thread_count)
   thread_count = thread_count + 1
end

function init(args)
   head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. wrk.headers["Host"]
      .. "\r\nContent-Type: application/json\r\nContent-Length: "
   code_prefix = '{"code":"bench-' .. run_id .. "-" .. (thread_id or 0) .. "-"
end

function request()
   counter = counter + 1
   local body = code_prefix .. counter .. '"}'
   return head .. #body .. "\r\n\r\n" .. body
end

function done(summary, latency, requests)
   -- The one line bench/run reads: totals, and latency percentiles in microseconds.
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d\n",
      summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(99),
      e.status, e.connect + e.read + e.write + e.timeout))
end
