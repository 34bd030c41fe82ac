-- wrk cross-check of the Python generator's saturation figure for the
-- baseline (bench/baseline_app.py does not verify signatures):
--   BODY_FILE=app/webhooks/samples/cart-order.created.json \
--     wrk -t1 -c64 -d15s -s bench/wrk_post.lua http://127.0.0.1:8001/webhooks/trackstar
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
