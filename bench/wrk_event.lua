-- wrk script: Lambda Event (asynchronous) invokes of a thaw function, key from BENCH_API_KEY.
wrk.method = "POST"
wrk.body = '{"name":"bench"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Amz-Invocation-Type"] = "Event"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")
