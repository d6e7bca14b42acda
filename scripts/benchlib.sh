# Shell helpers the benchmark scripts share (sourced, not run). The caller sets: member (the member binary), and the
# arrays member_pid, member_addr, member_log (associative), member_names and logs; bench_name prefixes messages.

free_port() { # a free TCP port on host $1
  if command -v python3 >/dev/null; then
    python3 -c 'import socket, sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1]); s.close()' "$1"
  else
    echo $((20000 + RANDOM % 20000))
  fi
}

# start_member NAME IP DIR [ARGS…] runs a member on its own loopback address with its data in DIR (its log next to it),
# ARGS added to its `member run`, and waits until it serves.
start_member() {
  local name=$1 ip=$2 dir=$3 data admin pid
  shift 3
  data="$ip:$(free_port "$ip")"
  admin="$ip:$(free_port "$ip")"
  mkdir -p "$(dirname "$dir")"
  "$member" run --name "$name" --data-dir "$dir" --listen "$data" --admin-listen "$admin" --log-format json "$@" \
    >>"$dir.log" 2>&1 &
  pid=$!
  member_pid[$name]=$pid
  member_addr[$name]=$data
  member_log[$name]=$dir.log
  logs+=("$dir.log")
  member_names+=("$name")
  wait_serving "$data" "$pid" || case $? in
    1) echo "$bench_name: member $name exited during start" >&2; exit 1 ;;
    *) echo "$bench_name: member $name on $data did not start" >&2; exit 1 ;;
  esac
}

# wait_serving ADDR PID returns 0 once the member at data address ADDR answers, 1 if process PID (the member, or the agent
# that runs it) exits first, and 2 after 30 seconds.
wait_serving() {
  for _ in $(seq 1 300); do
    "$member" status --member "$1" --timeout 1s >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 2
}

stop_member() { # NAME: SIGTERM, then SIGKILL if it is still there after 10s; sets stopped_status to its exit status
  local pid=${member_pid[$1]}
  stopped_status=0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" || stopped_status=$?
  unset "member_pid[$1]"
}

show_logs() { # the last lines of every server log, for a run that failed
  local log
  for log in "${logs[@]}"; do
    [ -s "$log" ] && { echo "--- last lines of $log"; tail -20 "$log"; }
  done
}
