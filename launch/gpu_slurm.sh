#!/usr/bin/env bash
# Submit a multi-node, multi-GPU training job to SLURM: one process per GPU, started by srun.
# Run `launch/gpu_slurm.sh --help` for usage.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

usage() {
    cat <<'USAGE'
Usage: launch/gpu_slurm.sh --config=CONFIG --workdir=DIR [options] [-- EXTRA_ARGS...]

Submits one `sbatch` job of NODES x GPUS_PER_NODE tasks. The batch script (sbatch --wrap, run by sh
on the first node) sets the coordinator, then `srun` starts one process per GPU:

    JAX_COORDINATOR_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)
    JAX_COORDINATOR_PORT=PORT             (default: SLURM_JOB_ID % 4096 + 61440, as jax picks it)
    JAX_COORDINATOR_ADDRESS=$JAX_COORDINATOR_IP:$JAX_COORDINATOR_PORT   (exported)
    srun --nodes=NODES --ntasks-per-node=GPUS_PER_NODE --kill-on-bad-exit=1 \
        PYTHON -m genxd_jax.main --config=CONFIG --workdir=DIR EXTRA_ARGS...

The trainer calls jax.distributed.initialize() with no arguments. It reads JAX_COORDINATOR_ADDRESS
and detects SLURM from the variables srun sets for every task: SLURM_JOB_ID, SLURM_STEP_NODELIST,
SLURM_NTASKS (-> num_processes), SLURM_PROCID (-> process_id) and SLURM_LOCALID (-> local_device_ids,
the one GPU this process drives). Every task must therefore see all GPUs of its node (the default
with --gpus-per-node; do not add --gpus-per-task or --gpu-bind=single). DIR must be on a file system
all nodes share (or gs://...). The job runs in the submission directory unless --chdir is given,
with the submitting shell's environment (sbatch's default --export=ALL): activate the virtualenv
before submitting, or pass --python=/path/to/venv/bin/python.

Options (environment variable in brackets; flags win):
  --config=CONFIG         config file[:arg] for genxd_jax.main          [GENXD_CONFIG]   required
  --workdir=DIR           run directory, shared by all nodes            [GENXD_WORKDIR]  required
  --nodes=N               nodes (default 1)                             [GENXD_NODES]
  --gpus-per-node=G       GPUs per node = processes per node (default 8) [GENXD_GPUS_PER_NODE]
  --partition=NAME        SLURM partition                               [GENXD_PARTITION]
  --account=NAME          SLURM account                                 [GENXD_ACCOUNT]
  --time=LIMIT            wall-clock limit, e.g. 2-00:00:00             [GENXD_TIME]
  --job-name=NAME         job name (default genxd)                      [GENXD_JOB_NAME]
  --output=PATTERN        log file (default genxd-%j.out; stderr too)   [GENXD_OUTPUT]
  --chdir=DIR             working directory of the job                  [GENXD_CHDIR]
  --cpus-per-task=C       CPUs per process (data loading)               [GENXD_CPUS_PER_TASK]
  --port=PORT             coordinator port (default from the job id)    [GENXD_COORDINATOR_PORT]
  --python=PYTHON         Python interpreter on the nodes (default python) [GENXD_PYTHON]
  --sbatch-arg=ARG        extra sbatch argument, repeatable, e.g. --sbatch-arg=--exclusive
  --dry-run               print the sbatch command (one line, shell-quoted) and exit
  -h, --help              show this help
  -- EXTRA_ARGS...        passed through to genxd_jax.main, e.g. --config.optimizer.learning_rate=1e-5

Example:
  launch/gpu_slurm.sh --nodes=2 --gpus-per-node=8 --partition=gpu --time=1-00:00:00 \
      --config=configs/stage3.py --workdir=/shared/runs/stage3 -- --config.optimizer.learning_rate=1e-5
USAGE
}

config=${GENXD_CONFIG:-}
workdir=${GENXD_WORKDIR:-}
nodes=${GENXD_NODES:-1}
gpus_per_node=${GENXD_GPUS_PER_NODE:-8}
partition=${GENXD_PARTITION:-}
account=${GENXD_ACCOUNT:-}
time_limit=${GENXD_TIME:-}
job_name=${GENXD_JOB_NAME:-genxd}
output=${GENXD_OUTPUT:-genxd-%j.out}
chdir=${GENXD_CHDIR:-}
cpus_per_task=${GENXD_CPUS_PER_TASK:-}
port=${GENXD_COORDINATOR_PORT:-}
python=${GENXD_PYTHON:-python}
DRY_RUN=0
sbatch_extra=()
extra=()

while (($#)); do
    case $1 in
        --config | --config=*) take_value "$@"; config=$OPTVAL; shift "$OPTSHIFT" ;;
        --workdir | --workdir=*) take_value "$@"; workdir=$OPTVAL; shift "$OPTSHIFT" ;;
        --nodes | --nodes=*) take_value "$@"; nodes=$OPTVAL; shift "$OPTSHIFT" ;;
        --gpus-per-node | --gpus-per-node=*) take_value "$@"; gpus_per_node=$OPTVAL; shift "$OPTSHIFT" ;;
        --partition | --partition=*) take_value "$@"; partition=$OPTVAL; shift "$OPTSHIFT" ;;
        --account | --account=*) take_value "$@"; account=$OPTVAL; shift "$OPTSHIFT" ;;
        --time | --time=*) take_value "$@"; time_limit=$OPTVAL; shift "$OPTSHIFT" ;;
        --job-name | --job-name=*) take_value "$@"; job_name=$OPTVAL; shift "$OPTSHIFT" ;;
        --output | --output=*) take_value "$@"; output=$OPTVAL; shift "$OPTSHIFT" ;;
        --chdir | --chdir=*) take_value "$@"; chdir=$OPTVAL; shift "$OPTSHIFT" ;;
        --cpus-per-task | --cpus-per-task=*) take_value "$@"; cpus_per_task=$OPTVAL; shift "$OPTSHIFT" ;;
        --port | --port=*) take_value "$@"; port=$OPTVAL; shift "$OPTSHIFT" ;;
        --python | --python=*) take_value "$@"; python=$OPTVAL; shift "$OPTSHIFT" ;;
        --sbatch-arg | --sbatch-arg=*) take_value "$@"; sbatch_extra+=("$OPTVAL"); shift "$OPTSHIFT" ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) die "unknown argument: $1 (pass arguments for genxd_jax.main after --)" ;;
    esac
done

require "$config" "--config (or GENXD_CONFIG)"
require "$workdir" "--workdir (or GENXD_WORKDIR)"
require "$python" "--python (or GENXD_PYTHON)"
require "$job_name" "--job-name (or GENXD_JOB_NAME)"
require "$output" "--output (or GENXD_OUTPUT)"
require_positive_int "$nodes" "--nodes"
require_positive_int "$gpus_per_node" "--gpus-per-node"
[[ -z $cpus_per_task ]] || require_positive_int "$cpus_per_task" "--cpus-per-task"
if [[ -n $port ]]; then
    require_positive_int "$port" "--port"
    ((port <= 65535)) || die "--port must be at most 65535, got $port"
fi

# The batch script, one line of POSIX sh (sbatch --wrap runs it with sh). `$...` below is expanded
# in the job, not here.
# shellcheck disable=SC2016
coordinator_ip='JAX_COORDINATOR_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)'
if [[ -n $port ]]; then
    coordinator_port="JAX_COORDINATOR_PORT=$port"
else
    # shellcheck disable=SC2016
    coordinator_port='JAX_COORDINATOR_PORT=$((SLURM_JOB_ID % 4096 + 61440))'
fi
# shellcheck disable=SC2016
export_coordinator='export JAX_COORDINATOR_IP JAX_COORDINATOR_PORT JAX_COORDINATOR_ADDRESS="$JAX_COORDINATOR_IP:$JAX_COORDINATOR_PORT"'
srun_cmd=(
    srun "--nodes=$nodes" "--ntasks-per-node=$gpus_per_node" --kill-on-bad-exit=1
    "$python" -m genxd_jax.main "--config=$config" "--workdir=$workdir" ${extra[@]+"${extra[@]}"}
)
wrap="set -eu; $coordinator_ip; $coordinator_port; $export_coordinator; $(join_quoted --posix "${srun_cmd[@]}")"

sbatch_cmd=(
    sbatch "--job-name=$job_name" "--nodes=$nodes" "--ntasks-per-node=$gpus_per_node"
    "--gpus-per-node=$gpus_per_node" "--output=$output"
)
[[ -z $partition ]] || sbatch_cmd+=("--partition=$partition")
[[ -z $account ]] || sbatch_cmd+=("--account=$account")
[[ -z $time_limit ]] || sbatch_cmd+=("--time=$time_limit")
[[ -z $chdir ]] || sbatch_cmd+=("--chdir=$chdir")
[[ -z $cpus_per_task ]] || sbatch_cmd+=("--cpus-per-task=$cpus_per_task")
sbatch_cmd+=(${sbatch_extra[@]+"${sbatch_extra[@]}"} "--wrap=$wrap")

run_or_print "${sbatch_cmd[@]}"
