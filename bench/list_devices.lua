-- A filtered page of 50: devices of one organization in one provisioning state.
local orgs = {}
for line in io.lines(os.getenv("ORGS_FILE")) do orgs[#orgs + 1] = line end
local token = os.getenv("TOKEN")
local query = os.getenv("LIST_QUERY") or "provisioningState=activated&pageSize=50"
math.randomseed(os.time())
request = function()
  local org = orgs[math.random(#orgs)]
  return wrk.format("GET", "/api/v1/devices?organizationId=" .. org .. "&" .. query,
    {["Authorization"] = "Bearer " .. token})
end
