-- wrk -s wrk-reads.lua URL -- MODE IDS_FILE TOKEN
-- The read scenarios of `fleetreg bench` with etcd's load generator (wrk), so
-- both sides of issue 10's read ratios are driven by the same client:
--   get  : GET /api/v1/clusters/{id}, id drawn uniformly from IDS_FILE (one per line)
--   list : GET /api/v1/clusters?environment=PRODUCTION&label=team%3Dpayments&page_size=20&page=P,
--          P uniform in 1..10 (the `list` scenario's query over the `seed` scenario's fleet)
-- done() prints: rps p50_ms p99_ms requests non2xx socket_errors (as the etcd peer's script)
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end

function init(args)
  local mode, ids_file, token = args[1], args[2], args[3]
  math.randomseed(os.time() * 100 + (tid or 0))   -- each thread its own draw
  wrk.headers["Authorization"] = "Bearer " .. token
  if mode == "get" then
    local ids = {}
    for line in io.lines(ids_file) do ids[#ids + 1] = line end
    assert(#ids > 0, "no ids in " .. ids_file)
    request = function()
      return wrk.format("GET", "/api/v1/clusters/" .. ids[math.random(#ids)])
    end
  elseif mode == "list" then
    request = function()
      return wrk.format("GET", "/api/v1/clusters?environment=PRODUCTION&label=team%3Dpayments"
        .. "&page_size=20&page=" .. math.random(10))
    end
  else error("unknown mode " .. tostring(mode)) end
end

function done(s, lat, req)
  local e = s.errors
  io.write(string.format("%.1f %.3f %.3f %d %d %d\n", s.requests / (s.duration / 1e6),
    lat:percentile(50) / 1000, lat:percentile(99) / 1000, s.requests, e.status,
    e.connect + e.read + e.write + e.timeout))
end
