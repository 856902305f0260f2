# Starts and stops a local S3 API server (moto_server from PyPI) on 127.0.0.1
# for the storage tests. Source after env.sh.

start_s3_server() {
  local port
  port=$("$SEPSIS_VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  s3_log=$(mktemp)
  "$SEPSIS_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$s3_log" 2>&1 &
  s3_pid=$!
  trap stop_s3_server EXIT
  local endpoint="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    if curl -sf -o /dev/null "$endpoint/"; then break; fi
    if ! kill -0 "$s3_pid" 2>/dev/null; then
      echo "the S3 API server exited; its log:" >&2
      cat "$s3_log" >&2
      exit 1
    fi
    sleep 0.2
  done
  curl -sf -X PUT -o /dev/null "$endpoint/sepsis-test" || {
    echo "creating bucket sepsis-test on $endpoint failed" >&2
    exit 1
  }
  export AWS_ENDPOINT_URL="$endpoint"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  export SEPSIS_TEST_S3_BUCKET=sepsis-test
  log "S3 API server on $endpoint (pid $s3_pid)"
}

stop_s3_server() {
  if [ -n "${s3_pid:-}" ] && kill -0 "$s3_pid" 2>/dev/null; then
    kill "$s3_pid" 2>/dev/null || true
    wait "$s3_pid" 2>/dev/null || true
  fi
  rm -f "${s3_log:-}"
}
