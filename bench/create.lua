-- wrk script for the "create" row: POST a small JSON record to the public
-- createRule collection `posts` (seeded by bench/seed.py).
-- Non-2xx answers show up in wrk's "Non-2xx or 3xx responses" line, which
-- bench/run.sh reports; no per-response Lua callback, so wrk stays cheap.
wrk.method = "POST"
wrk.body = '{"title":"x","score":1,"status":"a"}'
wrk.headers["Content-Type"] = "application/json"
