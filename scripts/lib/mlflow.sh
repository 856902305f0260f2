# Starts and stops two local MLflow tracking servers on 127.0.0.1 for the
# tracking tests: a plain one and one with HTTP basic authentication. Source
# after env.sh. The caller stops them with stop_mlflow_servers, from an EXIT
# trap that also stops its other servers.

# MLflow 3.x sends usage telemetry unless it is disabled, and the tests send
# nothing beyond this machine.
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

mlflow_pids=()
mlflow_dirs=()

mlflow_free_port() {
  "$SEPSIS_VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# launch_mlflow_server DIR PORT [ARGS...]: starts `mlflow server` in the
# background with its SQLite database, artifacts and log in DIR. The server
# runs uvicorn as a child process, so it gets its own process group, which
# stop_mlflow_servers ends as a whole.
launch_mlflow_server() {
  local dir=$1 port=$2
  shift 2
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$SEPSIS_VENV/bin/mlflow" server \
    --backend-store-uri "sqlite:///$dir/mlflow.db" \
    --serve-artifacts --artifacts-destination "$dir/artifacts" \
    --host 127.0.0.1 --port "$port" --workers 1 "$@" \
    >"$dir/server.log" 2>&1 &
  mlflow_pids+=("$!")
}

# wait_for_mlflow_server URI PID DIR: waits until /health responds. The first
# start migrates a new SQLite database, which takes 10 to 20 s on 2 cores.
wait_for_mlflow_server() {
  local uri=$1 pid=$2 dir=$3
  for _ in $(seq 1 600); do
    if curl -sf -o /dev/null "$uri/health"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the MLflow server for $uri exited; its log:" >&2
      cat "$dir/server.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "the MLflow server for $uri did not respond within 120 s; its log:" >&2
  cat "$dir/server.log" >&2
  exit 1
}

# Starts both servers, waits for them, and exports their addresses:
# SEPSIS_TEST_MLFLOW_URI for the plain server; SEPSIS_TEST_MLFLOW_AUTH_URI,
# SEPSIS_TEST_MLFLOW_USERNAME and SEPSIS_TEST_MLFLOW_PASSWORD for the one with
# basic authentication; SEPSIS_TEST_MLFLOW_BIN for tests that run their own.
start_mlflow_servers() {
  local plain_dir auth_dir plain_port auth_port password
  plain_dir=$(mktemp -d)
  auth_dir=$(mktemp -d)
  mlflow_dirs+=("$plain_dir" "$auth_dir")
  plain_port=$(mlflow_free_port)
  auth_port=$(mlflow_free_port)

  launch_mlflow_server "$plain_dir" "$plain_port"
  local plain_pid=${mlflow_pids[-1]}

  # MLflow ships no admin password: the basic-auth app creates the admin
  # user from its configuration file on first start.
  password=$("$SEPSIS_VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18))')
  cat >"$auth_dir/basic_auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = sqlite:///$auth_dir/basic_auth.db
admin_username = admin
admin_password = $password
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
  # The basic-auth app signs its CSRF tokens with this key.
  MLFLOW_AUTH_CONFIG_PATH="$auth_dir/basic_auth.ini" \
    MLFLOW_FLASK_SERVER_SECRET_KEY=$("$SEPSIS_VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))') \
    launch_mlflow_server "$auth_dir" "$auth_port" --app-name basic-auth
  local auth_pid=${mlflow_pids[-1]}

  wait_for_mlflow_server "http://127.0.0.1:$plain_port" "$plain_pid" "$plain_dir"
  wait_for_mlflow_server "http://127.0.0.1:$auth_port" "$auth_pid" "$auth_dir"

  export SEPSIS_TEST_MLFLOW_URI="http://127.0.0.1:$plain_port"
  export SEPSIS_TEST_MLFLOW_AUTH_URI="http://127.0.0.1:$auth_port"
  export SEPSIS_TEST_MLFLOW_USERNAME=admin
  export SEPSIS_TEST_MLFLOW_PASSWORD="$password"
  export SEPSIS_TEST_MLFLOW_BIN="$SEPSIS_VENV/bin/mlflow"
  log "MLflow servers on $SEPSIS_TEST_MLFLOW_URI (pid $plain_pid) and, with basic auth, $SEPSIS_TEST_MLFLOW_AUTH_URI (pid $auth_pid)"
}

stop_mlflow_servers() {
  local pid dir
  for pid in "${mlflow_pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  mlflow_pids=()
  for dir in "${mlflow_dirs[@]}"; do
    rm -rf "$dir"
  done
  mlflow_dirs=()
}
