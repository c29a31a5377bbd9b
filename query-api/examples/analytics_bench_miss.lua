-- Every request a new (start_date, end_date) pair: a cache miss of orders/summary.
local n = 900000 + (os.time() % 100000)
request = function()
  n = n + 1
  local sy = 1971 + (n % 27)
  local sd = 1 + (math.floor(n / 27) % 28)
  local sm = 1 + (math.floor(n / 756) % 12)
  local ey = 1998 + (math.floor(n / 9072) % 29)
  local path = string.format("/api/analytics-monitoring/analytics/orders/summary?start_date=%04d-%02d-%02d&end_date=%04d-12-%02d", sy, sm, sd, ey, 1 + (math.floor(n / 263088) % 28))
  return wrk.format("GET", path)
end
done = function(summary, latency, requests)
  io.write(string.format("non-2xx or errors: %d\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
