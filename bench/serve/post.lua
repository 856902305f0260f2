-- wrk script: every request posts the same single-row /predict body.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("SEPSIS_BENCH_BODY")
