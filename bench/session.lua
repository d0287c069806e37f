-- GET (or BENCH_METHOD) the path wrk was given with a bearer token, round-robin over the
-- tokens in the file named by BENCH_TOKENS (one a line). Each thread starts at a different place in
-- the list so that the connections do not march in step.

local tokens_file = os.getenv("BENCH_TOKENS") or error("BENCH_TOKENS is not set")
local method = os.getenv("BENCH_METHOD") or "GET"
local thread_count = 0
local requests = {}
local next_index = 1

function setup(thread)
   thread:set("thread_id", thread_count)
   thread_count = thread_count + 1
end

function init(args)
   local path = wrk.path
   for line in io.lines(tokens_file) do
      if line ~= "" then
         requests[#requests + 1] = wrk.format(method, path, { ["Authorization"] = "Bearer " .. line })
      end
   end
   if #requests == 0 then
      error("no tokens in " .. tokens_file)
   end
   next_index = ((thread_id or 0) * 997) % #requests + 1
end

function request()
   local r = requests[next_index]
   next_index = next_index % #requests + 1
   return r
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
