# Sourced by bench/run and bench/console-search: a scratch directory (WORK) and the
# processes a run starts (PIDS), both cleaned up on exit; free loopback ports; waiting
# for a server to answer. The script defines `die` and sets WORK_NAME first.
# shellcheck shell=bash

WORK=$(mktemp -d "${TMPDIR:-/tmp}/$WORK_NAME.XXXXXX")
PIDS=()

cleanup() {
    local pid _
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nothing listens on, below the ephemeral range so that wrk's own
# client sockets never take it; never the same one twice in a run.
USED_PORTS=" "
free_port() {
    local port _
    for _ in $(seq 500); do
        port=$((20000 + RANDOM % 12000))
        [[ $USED_PORTS == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    die "no free loopback port found"
}

# Whether `url` comes to answer 2xx while `pid` lives, within about 10 s.
answers() {
    local pid=$1 url=$2 _
    for _ in $(seq 400); do
        kill -0 "$pid" 2>/dev/null || return 1
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.025
    done
    return 1
}

# Waits until `url` answers 2xx while `pid` lives.
wait_ready() {
    local name=$1 pid=$2 url=$3 log=$4
    answers "$pid" "$url" && return 0
    tail -n 20 "$log" >&2 || true
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup (log above)"
    die "$name did not answer $url within 10 s"
}
