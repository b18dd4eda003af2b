-- wrk script: POST a small event to a thaw function with the admin key from THAW_KEY.
wrk.method = "POST"
wrk.body = '{"name":"bench"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("THAW_KEY")
