request = function() return wrk.format("GET", "/healthz") end
