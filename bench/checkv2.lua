-- bench/checkv2.lua - wrk script for authscand (rspamd's POST /checkv2).
--
--   wrk -t1 -c64 -d20s --latency -s bench/checkv2.lua http://127.0.0.1:PORT \
--       -- MANIFEST [STOP_AFTER]
--
-- MANIFEST is bench/gen_corpus.py's manifest.tsv (file ip helo hostname
-- mail_from rcpt queue_id ...); messages are read from its directory's msgs/.
-- Every request carries its own message's envelope as rspamd protocol
-- headers; the corpus is cycled.  All requests are built in init(), so the
-- per-request cost in wrk is an array lookup.
--   STOP_AFTER  print "AUTHSCAN_WRK_REACHED" after this many responses (0: never);
--               the driver then stops wrk with SIGINT (memory soak: 100,000 and
--               200,000 messages)
--   PACE_MS     (environment variable AUTHSCAN_PACE_MS) 0: closed loop.  Otherwise each connection waits a random,
--               exponentially distributed time of this mean before sending its
--               next request (open-ish load below saturation; wrk measures
--               latency from the moment the request is written).
--   PATH        (environment variable AUTHSCAN_PATH, default /checkv2) the request
--               target: the daemon-path step posts the same requests to /ping,
--               which reads and parses them and answers without a scan (the
--               cost of the HTTP exchange alone)
-- Non-200 replies count as errors (wrk's status errors).  At the end one
-- line "AUTHSCAN_WRK {json}" sums it up.

local reqs = {}
local pos = 0
local stop_after = 0
local seen = 0
local bad = 0
local thread_no = 0
local path = os.getenv("AUTHSCAN_PATH") or "/checkv2"

function setup(thread)
  thread:set("thread_no", thread_no)
  thread_no = thread_no + 1
end

local function fields(line)
  local out = {}
  for f in (line .. "\t"):gmatch("([^\t]*)\t") do out[#out + 1] = f end
  return out
end

function init(args)
  local manifest = args[1] or "bench/work/corpus/manifest.tsv"
  stop_after = tonumber(args[2] or "0") or 0
  local dir = manifest:match("^(.*)/[^/]*$") or "."
  for line in io.lines(manifest) do
    if #line > 0 and line:sub(1, 1) ~= "#" then
      local f = fields(line)
      local fh = assert(io.open(dir .. "/msgs/" .. f[1], "rb"))
      local body = fh:read("a")
      fh:close()
      local h = { ["IP"] = f[2], ["Helo"] = f[3], ["From"] = f[5], ["Rcpt"] = f[6],
                  ["Queue-Id"] = f[7], ["Content-Type"] = "message/rfc822" }
      if f[4] ~= "unknown" and f[4] ~= "" then h["Hostname"] = f[4] end
      reqs[#reqs + 1] = wrk.format("POST", path, h, body)
    end
  end
  -- threads start at different places of the corpus
  pos = ((thread_no or 0) * 997) % #reqs
  math.randomseed(12345 + (thread_no or 0))
end

function request()
  pos = pos % #reqs + 1
  return reqs[pos]
end

-- wrk decides whether the script has delay() before init() runs, so pacing
-- comes from the environment (bench.py sets it); without it delay() stays
-- undefined and the closed loop keeps wrk's immediate re-send.
local env_pace = tonumber(os.getenv("AUTHSCAN_PACE_MS") or "0") or 0
if env_pace > 0 then
  function delay()
    return -math.log(1 - math.random()) * env_pace
  end
end

function response(status, headers, body)
  seen = seen + 1
  if status ~= 200 then bad = bad + 1 end
  if stop_after > 0 and seen == stop_after then
    -- wrk's main thread sleeps for the whole -d: tell the driver, which
    -- sends SIGINT (wrk then stops and prints its summary)
    io.write("AUTHSCAN_WRK_REACHED\n")
    io.stdout:flush()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'AUTHSCAN_WRK {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
