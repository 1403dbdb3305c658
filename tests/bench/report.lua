-- wrk reporting hook for tests/bench/proxy_bench.sh: one machine-readable line
-- at the end of a run (latencies in microseconds, straight from wrk's histogram).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKRESULT requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f mean_us=%.1f max_us=%.0f " ..
    "non2xx=%.0f connect=%.0f read=%.0f write=%.0f timeout=%.0f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
