-- wrk script: bench/dense.lua's request (one 1×64 FP32 row as V2 JSON to the dense model), for
-- runs where failures are expected and counted (wrk's "Non-2xx" line), not a reason to stop.
local values = {}
for i = 1, 64 do
    values[i] = string.format("%.4f", math.sin(i))
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"x","shape":[1,64],"datatype":"FP32","data":['
    .. table.concat(values, ",") .. ']}]}'
