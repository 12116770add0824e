#!/usr/bin/env bash
# Train or evaluate on this host: one process, or N local processes joined by a localhost coordinator.
# Run `launch/local.sh --help` for usage.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

usage() {
    cat <<'USAGE'
Usage: launch/local.sh --config=CONFIG --workdir=DIR [options] [-- EXTRA_ARGS...]

Runs `python -m genxd_jax.main --config=CONFIG --workdir=DIR EXTRA_ARGS...` on this host.
With --processes N > 1 it starts N processes of the same command on this host, process i with

    GENXD_COORDINATOR_ADDRESS=localhost:PORT  GENXD_NUM_PROCESSES=N  GENXD_PROCESS_ID=i

in its environment; the trainer passes them to jax.distributed.initialize(coordinator_address,
num_processes, process_id). Use it to test multi-process code on CPU (--cpu-devices). Output of all
processes is interleaved on this terminal; if one process fails the others are killed and the
script exits with its status.

Options (environment variable in brackets; flags win):
  --config=CONFIG       config file[:arg] for genxd_jax.main           [GENXD_CONFIG]   required
  --workdir=DIR         run directory (local path or gs://...)        [GENXD_WORKDIR]  required
  --processes=N         number of local processes (default 1)         [GENXD_LOCAL_PROCESSES]
  --port=PORT           coordinator port for N > 1 (default 12355)    [GENXD_LOCAL_PORT]
  --cpu-devices=K       run on CPU with K fake devices per process: sets JAX_PLATFORMS=cpu and
                        XLA_FLAGS=--xla_force_host_platform_device_count=K   [GENXD_CPU_DEVICES]
  --python=PYTHON       Python interpreter (default python)           [GENXD_PYTHON]
  --dry-run             print the commands, one per line, shell-quoted, and exit
  -h, --help            show this help
  -- EXTRA_ARGS...      passed through to genxd_jax.main, e.g. --config.optimizer.learning_rate=1e-5

Examples:
  launch/local.sh --config=configs/stage3.py:tiny --workdir=runs/tiny
  launch/local.sh --processes=2 --cpu-devices=4 --config=configs/stage3.py:tiny --workdir=/tmp/mp -- \
      --config.num_train_steps=2
USAGE
}

config=${GENXD_CONFIG:-}
workdir=${GENXD_WORKDIR:-}
processes=${GENXD_LOCAL_PROCESSES:-1}
port=${GENXD_LOCAL_PORT:-12355}
cpu_devices=${GENXD_CPU_DEVICES:-}
python=${GENXD_PYTHON:-python}
DRY_RUN=0
extra=()

while (($#)); do
    case $1 in
        --config | --config=*) take_value "$@"; config=$OPTVAL; shift "$OPTSHIFT" ;;
        --workdir | --workdir=*) take_value "$@"; workdir=$OPTVAL; shift "$OPTSHIFT" ;;
        --processes | --processes=*) take_value "$@"; processes=$OPTVAL; shift "$OPTSHIFT" ;;
        --port | --port=*) take_value "$@"; port=$OPTVAL; shift "$OPTSHIFT" ;;
        --cpu-devices | --cpu-devices=*) take_value "$@"; cpu_devices=$OPTVAL; shift "$OPTSHIFT" ;;
        --python | --python=*) take_value "$@"; python=$OPTVAL; shift "$OPTSHIFT" ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) die "unknown argument: $1 (pass arguments for genxd_jax.main after --)" ;;
    esac
done

require "$config" "--config (or GENXD_CONFIG)"
require "$workdir" "--workdir (or GENXD_WORKDIR)"
require "$python" "--python (or GENXD_PYTHON)"
require_positive_int "$processes" "--processes"
require_positive_int "$port" "--port"
((port <= 65535)) || die "--port must be at most 65535, got $port"
[[ -z $cpu_devices ]] || require_positive_int "$cpu_devices" "--cpu-devices"

main_cmd=("$python" -m genxd_jax.main "--config=$config" "--workdir=$workdir" ${extra[@]+"${extra[@]}"})

env_common=()
if [[ -n $cpu_devices ]]; then
    env_common+=(JAX_PLATFORMS=cpu "XLA_FLAGS=--xla_force_host_platform_device_count=$cpu_devices")
fi

# process_cmd I: the command for local process I in the array CMD.
process_cmd() {
    CMD=()
    local env_vars=(${env_common[@]+"${env_common[@]}"})
    if ((processes > 1)); then
        env_vars+=(
            "GENXD_COORDINATOR_ADDRESS=localhost:$port"
            "GENXD_NUM_PROCESSES=$processes"
            "GENXD_PROCESS_ID=$1"
        )
    fi
    if ((${#env_vars[@]})); then
        CMD=(env "${env_vars[@]}")
    fi
    CMD+=("${main_cmd[@]}")
}

if ((processes == 1)); then
    process_cmd 0
    if ((DRY_RUN)); then
        run_or_print "${CMD[@]}"
        exit 0
    fi
    printf '+ %s\n' "$(join_quoted "${CMD[@]}")" >&2
    exec "${CMD[@]}"
fi

if ((DRY_RUN)); then
    for ((i = 0; i < processes; i++)); do
        process_cmd "$i"
        run_or_print "${CMD[@]}"
    done
    exit 0
fi

pids=()
kill_all() {
    local pid
    for pid in ${pids[@]+"${pids[@]}"}; do
        kill "$pid" 2>/dev/null || true
    done
}
trap 'kill_all; exit 130' INT
trap 'kill_all; exit 143' TERM

for ((i = 0; i < processes; i++)); do
    process_cmd "$i"
    printf '+ %s &\n' "$(join_quoted "${CMD[@]}")" >&2
    "${CMD[@]}" &
    pids+=("$!")
done

status=0
for ((left = processes; left > 0; left--)); do
    rc=0
    wait -n || rc=$?
    if ((rc != 0)); then
        printf '%s: a process exited with status %d; stopping the others\n' "${0##*/}" "$rc" >&2
        status=$rc
        kill_all
        break
    fi
done
wait || true
exit "$status"
