-- wrk script: classify one 8x8 digit (a "7") with a thaw function; the key from BENCH_API_KEY.
wrk.method = "POST"
wrk.body = '{"pixels":[0,8,16,16,16,16,8,0,0,0,0,0,4,16,6,0,0,0,0,0,12,14,0,0,0,0,0,4,16,6,0,0,' ..
           '0,0,0,12,14,0,0,0,0,0,2,16,8,0,0,0,0,0,8,16,2,0,0,0,0,0,12,12,0,0,0,0]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")
