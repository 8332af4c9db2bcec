-- wrk script: POST one sentence per request as a V2 BYTES input named "text", cycling through
-- bench/data/sentences.txt. Run from the repository root.
local bodies = {}
for line in io.lines("bench/data/sentences.txt") do
    local escaped = line:gsub('\\', '\\\\'):gsub('"', '\\"')
    bodies[#bodies + 1] = '{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["'
        .. escaped .. '"]}]}'
end
local next_body = 0

function request()
    next_body = next_body % #bodies + 1
    return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, bodies[next_body])
end

function response(status, headers, body)
    if status ~= 200 then
        io.stderr:write("status " .. status .. ": " .. body .. "\n")
        wrk.thread:stop()
    end
end
