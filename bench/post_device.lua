-- POST /api/v1/devices with distinct serial numbers.
local token = os.getenv("TOKEN")
local template = os.getenv("TEMPLATE")
local n = 0
local thread_id = 0
setup = function(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end
request = function()
  n = n + 1
  local body = '{"deviceTemplateId":"' .. template .. '","serialNumber":"B' .. thread_id .. '-' .. n .. '"}'
  return wrk.format("POST", "/api/v1/devices",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
