-- GET /api/v1/devices/{id} over a sample of the seeded ids, in random order.
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
local token = os.getenv("TOKEN")
math.randomseed(os.time())
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/api/v1/devices/" .. id, {["Authorization"] = "Bearer " .. token})
end
