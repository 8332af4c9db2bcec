-- wrk script: POST one 1×64 FP32 row as V2 JSON to a dense 64→256→10 model (input "x").
local values = {}
for i = 1, 64 do
    values[i] = string.format("%.4f", math.sin(i))
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"x","shape":[1,64],"datatype":"FP32","data":['
    .. table.concat(values, ",") .. ']}]}'

function response(status, headers, body)
    if status ~= 200 then
        io.stderr:write("status " .. status .. ": " .. body .. "\n")
        wrk.thread:stop()
    end
end
