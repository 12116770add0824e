#!/usr/bin/env bash
# Create a Cloud TPU VM slice, install genxd_jax on every worker, train on all workers, delete the slice.
# Run `launch/tpu_vm.sh --help` for usage.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    cat <<'USAGE'
Usage: launch/tpu_vm.sh --name=TPU --zone=ZONE --accelerator-type=TYPE --runtime-version=VERSION \
           --config=CONFIG --workdir=gs://BUCKET/RUN [options] [-- EXTRA_ARGS...]

Steps (each one gcloud / tar command; --dry-run prints them, one per line):
  1. gcloud compute tpus tpu-vm create TPU --zone --project --accelerator-type --version [--spot]
     (skipped with --reuse)
  2. copy the code to every worker (skipped with --skip-setup):
       without --repo-url: tar this checkout (minus .git, virtualenvs, runs/, caches) and
         `gcloud compute tpus tpu-vm scp` it to all workers, then unpack it into REMOTE_DIR;
       with --repo-url: `git clone` it into REMOTE_DIR on every worker and check out --ref;
     then `REMOTE_PYTHON -m pip install -e . JAX_SPEC` in REMOTE_DIR on every worker;
  3. `gcloud compute tpus tpu-vm ssh TPU --worker=all --command="cd REMOTE_DIR && [env K=V...] \
       REMOTE_PYTHON -m genxd_jax.main --config=CONFIG --workdir=WORKDIR EXTRA_ARGS..."`;
     the output of all workers streams to this terminal. On a TPU VM jax.distributed.initialize()
     needs no arguments (it detects the slice).
  4. gcloud compute tpus tpu-vm delete TPU --quiet, also when a step fails or on Ctrl-C, unless
     --keep or --reuse.

Options (environment variable in brackets; flags win):
  --name=TPU              TPU VM name                              [GENXD_TPU_NAME]        required
  --zone=ZONE             e.g. us-central2-b                       [GENXD_TPU_ZONE]        required
  --project=PROJECT       GCP project (default: gcloud's)          [GENXD_GCP_PROJECT]
  --accelerator-type=T    e.g. v4-32, v5litepod-16, v6e-8          [GENXD_TPU_TYPE]        required to create
  --runtime-version=V     e.g. tpu-ubuntu2204-base, v2-alpha-tpuv5-lite, v2-alpha-tpuv6e
                                                                   [GENXD_TPU_RUNTIME]     required to create
  --spot                  create a Spot VM                         [GENXD_TPU_SPOT=1]
  --config=CONFIG         config file[:arg], relative to the repo  [GENXD_CONFIG]          required
  --workdir=gs://...      run directory; must be gs://             [GENXD_WORKDIR]         required
  --repo-url=URL          git URL to clone on the workers instead of copying this checkout [GENXD_REPO_URL]
  --ref=REF               branch, tag or commit to check out (default HEAD)               [GENXD_REPO_REF]
  --remote-dir=DIR        code directory on the workers (default genxd_jax, i.e. ~/genxd_jax)
                                                                   [GENXD_REMOTE_DIR]
  --remote-python=PY      Python on the workers (default python3)  [GENXD_REMOTE_PYTHON]
  --jax-spec=SPEC         pip requirement for JAX on TPU (default jax[tpu])  [GENXD_JAX_SPEC]
  --env=KEY=VALUE         environment variable for the training processes, repeatable
  --reuse                 use an existing TPU VM: no create and no delete
  --skip-setup            do not copy or install the code (already set up)
  --keep                  do not delete the TPU VM at the end      [GENXD_TPU_KEEP=1]
  --dry-run               print the commands, one per line, shell-quoted, and exit
  -h, --help              show this help
  -- EXTRA_ARGS...        passed through to genxd_jax.main, e.g. --config.optimizer.learning_rate=1e-5

Example:
  launch/tpu_vm.sh --name=genxd-v4 --zone=us-central2-b --project=my-proj --accelerator-type=v4-32 \
      --runtime-version=tpu-ubuntu2204-base --config=configs/stage3.py --workdir=gs://my-bucket/stage3 \
      -- --config.optimizer.learning_rate=1e-5
USAGE
}

truthy() { [[ $1 == 1 || $1 == true || $1 == yes ]]; }

name=${GENXD_TPU_NAME:-}
zone=${GENXD_TPU_ZONE:-}
project=${GENXD_GCP_PROJECT:-}
accelerator_type=${GENXD_TPU_TYPE:-}
runtime_version=${GENXD_TPU_RUNTIME:-}
spot=0
truthy "${GENXD_TPU_SPOT:-0}" && spot=1
config=${GENXD_CONFIG:-}
workdir=${GENXD_WORKDIR:-}
repo_url=${GENXD_REPO_URL:-}
ref=${GENXD_REPO_REF:-HEAD}
remote_dir=${GENXD_REMOTE_DIR:-genxd_jax}
remote_python=${GENXD_REMOTE_PYTHON:-python3}
jax_spec=${GENXD_JAX_SPEC:-jax[tpu]}
keep=0
truthy "${GENXD_TPU_KEEP:-0}" && keep=1
reuse=0
skip_setup=0
DRY_RUN=0
env_vars=()
extra=()

while (($#)); do
    case $1 in
        --name | --name=*) take_value "$@"; name=$OPTVAL; shift "$OPTSHIFT" ;;
        --zone | --zone=*) take_value "$@"; zone=$OPTVAL; shift "$OPTSHIFT" ;;
        --project | --project=*) take_value "$@"; project=$OPTVAL; shift "$OPTSHIFT" ;;
        --accelerator-type | --accelerator-type=*) take_value "$@"; accelerator_type=$OPTVAL; shift "$OPTSHIFT" ;;
        --runtime-version | --runtime-version=*) take_value "$@"; runtime_version=$OPTVAL; shift "$OPTSHIFT" ;;
        --spot) spot=1; shift ;;
        --config | --config=*) take_value "$@"; config=$OPTVAL; shift "$OPTSHIFT" ;;
        --workdir | --workdir=*) take_value "$@"; workdir=$OPTVAL; shift "$OPTSHIFT" ;;
        --repo-url | --repo-url=*) take_value "$@"; repo_url=$OPTVAL; shift "$OPTSHIFT" ;;
        --ref | --ref=*) take_value "$@"; ref=$OPTVAL; shift "$OPTSHIFT" ;;
        --remote-dir | --remote-dir=*) take_value "$@"; remote_dir=$OPTVAL; shift "$OPTSHIFT" ;;
        --remote-python | --remote-python=*) take_value "$@"; remote_python=$OPTVAL; shift "$OPTSHIFT" ;;
        --jax-spec | --jax-spec=*) take_value "$@"; jax_spec=$OPTVAL; shift "$OPTSHIFT" ;;
        --env | --env=*)
            take_value "$@"
            [[ $OPTVAL =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env needs KEY=VALUE, got '$OPTVAL'"
            env_vars+=("$OPTVAL")
            shift "$OPTSHIFT"
            ;;
        --reuse) reuse=1; shift ;;
        --skip-setup) skip_setup=1; shift ;;
        --keep) keep=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) die "unknown argument: $1 (pass arguments for genxd_jax.main after --)" ;;
    esac
done

require "$name" "--name (or GENXD_TPU_NAME)"
require "$zone" "--zone (or GENXD_TPU_ZONE)"
if ((!reuse)); then
    require "$accelerator_type" "--accelerator-type (or GENXD_TPU_TYPE) to create the TPU VM"
    require "$runtime_version" "--runtime-version (or GENXD_TPU_RUNTIME) to create the TPU VM"
fi
require "$config" "--config (or GENXD_CONFIG)"
require "$workdir" "--workdir (or GENXD_WORKDIR)"
[[ $workdir == gs://?* ]] || die "--workdir must be a gs:// URL (every worker writes there, and the VM is deleted), got '$workdir'"
require "$remote_dir" "--remote-dir (or GENXD_REMOTE_DIR)"
require "$remote_python" "--remote-python (or GENXD_REMOTE_PYTHON)"
require "$jax_spec" "--jax-spec (or GENXD_JAX_SPEC)"
require "$ref" "--ref (or GENXD_REPO_REF)"

location=("--zone=$zone")
[[ -z $project ]] || location+=("--project=$project")
tpu=(gcloud compute tpus tpu-vm)

# Remote command strings (run by the workers' login shell): every word quoted.
rdir=$(quote_path_posix "$remote_dir")
rpy=$(quote_posix "$remote_python")
install="cd $rdir && $rpy -m pip install -e . $(quote_posix "$jax_spec")"
train_cmd=("$remote_python" -m genxd_jax.main "--config=$config" "--workdir=$workdir" ${extra[@]+"${extra[@]}"})
if ((${#env_vars[@]})); then
    train_cmd=(env "${env_vars[@]}" "${train_cmd[@]}")
fi
train="cd $rdir && $(join_quoted --posix "${train_cmd[@]}")"

delete_vm() {
    run_or_print "${tpu[@]}" delete "$name" "${location[@]}" --quiet
}

delete_on_exit() {
    local status=$?
    trap - EXIT INT TERM
    delete_vm || printf '%s: could not delete TPU VM %s; delete it by hand\n' "${0##*/}" "$name" >&2
    exit "$status"
}

if ((!reuse)); then
    create=("${tpu[@]}" create "$name" "${location[@]}" "--accelerator-type=$accelerator_type"
        "--version=$runtime_version")
    ((!spot)) || create+=(--spot)
    run_or_print "${create[@]}"
    if ((!keep && !DRY_RUN)); then
        trap delete_on_exit EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
    fi
fi

if ((!skip_setup)); then
    if [[ -n $repo_url ]]; then
        rref=$(quote_posix "$ref")
        fetch="{ [ -d $rdir/.git ] || git clone $(quote_posix "$repo_url") $rdir; }"
        fetch+=" && git -C $rdir fetch origin $rref && git -C $rdir checkout --force FETCH_HEAD"
        run_or_print "${tpu[@]}" ssh "$name" "${location[@]}" --worker=all "--command=$fetch && $install"
    else
        tarball="${TMPDIR:-/tmp}/genxd_jax-$name.tar.gz"
        remote_tarball="genxd_jax-$name.tar.gz"
        run_or_print tar -czf "$tarball" --exclude=.git --exclude=venv --exclude=.venv --exclude=runs \
            --exclude=__pycache__ --exclude='*.egg-info' --exclude=.pytest_cache --exclude=.ruff_cache \
            --exclude=.device --exclude=.gl --exclude=.whl -C "$repo_root" .
        run_or_print "${tpu[@]}" scp "$tarball" "$name:$remote_tarball" "${location[@]}" --worker=all
        run_or_print rm -f "$tarball"
        unpack="mkdir -p $rdir && tar -xzf $(quote_posix "$remote_tarball") -C $rdir"
        unpack+=" && rm -f $(quote_posix "$remote_tarball")"
        run_or_print "${tpu[@]}" ssh "$name" "${location[@]}" --worker=all "--command=$unpack && $install"
    fi
fi

run_or_print "${tpu[@]}" ssh "$name" "${location[@]}" --worker=all "--command=$train"

if ((!reuse && !keep)); then
    if ((DRY_RUN)); then
        delete_vm
    fi
    # Otherwise the EXIT trap deletes the VM.
fi
