-- bench/rpc_post.lua, for wrk (bench/rpc): POST /rpc with one small JSON-RPC request per HTTP request
-- (keep-alive). RPC_BODY in the environment replaces the default ping.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("RPC_BODY") or '{"jsonrpc":"2.0","id":1,"method":"ping"}'

local bad = 0
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("non-200 replies: %d\n", bad))
end
