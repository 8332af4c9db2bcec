-- wrk script: bench/dense.lua's request (one 1×64 FP32 row as V2 JSON to the dense model) with
-- an `x-user-id` header drawn per request from 100,000 users: the sticky key of a traffic
-- policy (bench/experiments.py). Every mode of that benchmark sends it, so that the policy is
-- the only difference between them.
local values = {}
for i = 1, 64 do
    values[i] = string.format("%.4f", math.sin(i))
end
local body = '{"inputs":[{"name":"x","shape":[1,64],"datatype":"FP32","data":['
    .. table.concat(values, ",") .. ']}]}'
local path = "/v2/models/dense/infer"

function request()
    local headers = {
        ["Content-Type"] = "application/json",
        ["x-user-id"] = "user-" .. math.random(1, 100000),
    }
    return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
    if status ~= 200 then
        io.stderr:write("status " .. status .. ": " .. body .. "\n")
        wrk.thread:stop()
    end
end
