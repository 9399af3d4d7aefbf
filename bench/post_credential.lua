-- POST /api/v1/access/mqtt-credentials for seeded devices in random order: a test rig
-- giving each device its secret (a device seen again gets a new one).
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
local token = os.getenv("TOKEN")
math.randomseed(os.time())
request = function()
  local body = '{"entityType":"device","entityId":"' .. ids[math.random(#ids)] .. '"}'
  return wrk.format("POST", "/api/v1/access/mqtt-credentials",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
