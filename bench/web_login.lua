-- A web login, again and again, as a browser and WeChat make it: GET
-- /v1/oauth/wechat/authorize (a state and a cookie), GET /v1/oauth/wechat/callback with
-- a code for a person never seen before (the fake WeChat's `dev:` codes), then POST
-- /v1/oauth/token with the one-time code the callback sent the page. Each step needs
-- the previous one's answer, so each thread drives one connection: run it with as many
-- threads as connections. BENCH_WEB_APPID names the official account app,
-- BENCH_WEB_REDIRECT its redirect_uri (percent-encoded).
--
-- The figures it prints count whole logins, not requests; the latency percentiles are
-- those of the single requests, all three steps alike.

local run_id = os.getenv("BENCH_RUN_ID") or tostring(os.time())
local appid = os.getenv("BENCH_WEB_APPID")
local redirect = os.getenv("BENCH_WEB_REDIRECT")
local threads = {}
local step, counter, state, cookie, code = 1, 0, nil, nil, nil
logins, failures = 0, 0

function setup(thread)
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

local function host()
   return "Host: " .. wrk.headers["Host"] .. "\r\n"
end

function request()
   if step == 1 then
      return "GET /v1/oauth/wechat/authorize?appid=" .. appid .. "&redirect_uri=" .. redirect
         .. "&state=bench HTTP/1.1\r\n" .. host() .. "\r\n"
   elseif step == 2 then
      counter = counter + 1
      return "GET /v1/oauth/wechat/callback?code=dev:web-" .. run_id .. "-" .. thread_id .. "-"
         .. counter .. "&state=" .. state .. " HTTP/1.1\r\n" .. host() .. "Cookie: " .. cookie
         .. "\r\n\r\n"
   else
      local body = '{"code":"' .. code .. '"}'
      return "POST /v1/oauth/token HTTP/1.1\r\n" .. host()
         .. "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
   end
end

local function header(headers, name)
   for k, v in pairs(headers) do
      if k:lower() == name then
         return v
      end
   end
end

function response(status, headers, body)
   local location = header(headers, "location") or ""
   if step == 1 and status == 302 then
      state = location:match("[?&]state=(%x+)")
      cookie = (header(headers, "set-cookie") or ""):match("^([^;]+)")
      step = (state and cookie) and 2 or 1
   elseif step == 2 and status == 302 then
      code = location:match("[?&]wxauth_code=([%w_-]+)")
      step = code and 3 or 1
   else
      if step == 3 and status == 200 then
         logins = logins + 1
      else
         failures = failures + 1
      end
      step = 1
   end
end

function done(summary, latency, requests)
   local total, failed = 0, 0
   for _, thread in ipairs(threads) do
      total = total + thread:get("logins")
      failed = failed + thread:get("failures")
   end
   local e = summary.errors
   -- The one line bench/run reads, counting logins; a login that went wrong at any step
   -- counts as a status error.
   io.write(string.format(
      "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d\n",
      total + failed, summary.duration,
      latency:percentile(50), latency:percentile(99),
      failed, e.connect + e.read + e.write + e.timeout))
end
