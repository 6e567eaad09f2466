"""Renters' jobs on the worker: the job manager with the subprocess runner running real processes,
and the docker runner's exact command lines, run against a fake ``docker`` placed first on PATH
that records its arguments and behaves like ``docker image inspect / pull / run / stop / kill``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from byteleap.config.worker import JobsSection
from byteleap.protocol.worker_link.jobs import (
    ArtifactChunk,
    ArtifactQuery,
    JobAccepted,
    JobCancel,
    JobLimits,
    JobLogs,
    JobLogsQuery,
    JobRefused,
    JobResult,
    JobResultQuery,
    JobSpec,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
)
from workers.jobs import DockerRunner, SubprocessRunner, make_runner
from workers.jobs.docker_runner import (
    container_name,
    cpus_value,
    docker_run_argv,
    env_file_text,
    gpu_devices,
)
from workers.jobs.files import JobPaths, lease_dir_name
from workers.jobs.manager import Job, JobManager
from workers.jobs.runner import JobRun, Runner

LEASE = "lease-1"
GPUS = ("GPU-aaaa-1111", "GPU-bbbb-2222")
PY = sys.executable


def spec(*command: str, timeout_s: int = 60, **kw: Any) -> JobSpec:
    return JobSpec(image="python:3.11", command=list(command), timeout_s=timeout_s, **kw)


def py(code: str, *args: str, **kw: Any) -> JobSpec:
    return spec(PY, "-c", code, *args, **kw)


def submit(job_id: str, job_spec: JobSpec, lease: str = LEASE) -> JobSubmit:
    return JobSubmit(request_id=f"r-{job_id}", lease_id=lease, job_id=job_id, spec=job_spec)


def query(kind: type, job_id: str, lease: str = LEASE, **kw: Any) -> Any:
    return kind(request_id=f"q-{job_id}", lease_id=lease, job_id=job_id, **kw)


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def finished(manager: JobManager, job_id: str, lease: str = LEASE) -> Job:
    def done() -> bool:
        job = manager.get(lease, job_id)
        return job is not None and job.final and job.task is not None and job.task.done()

    await until(done)
    job = manager.get(lease, job_id)
    assert job is not None
    return job


def make_manager(tmp_path: Path, runner: Runner | None = None, **kw: Any) -> JobManager:
    kw.setdefault("max_output_bytes", 64 * 1024)
    kw.setdefault("max_artifact_bytes", 1 << 20)
    if runner is None:
        runner = SubprocessRunner(stop_timeout_s=kw.pop("stop_timeout_s", 1.0))
    return JobManager(runner, tmp_path / "jobs", **kw)


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[JobManager]:
    jobs = make_manager(tmp_path)
    await jobs.start()
    yield jobs
    await jobs.close()


async def run_to_end(manager: JobManager, job_id: str, job_spec: JobSpec) -> Job:
    reply = await manager.handle(submit(job_id, job_spec), GPUS)
    assert isinstance(reply, JobAccepted), reply
    return await finished(manager, job_id)


async def logs_of(manager: JobManager, job_id: str, **kw: Any) -> JobLogs:
    reply = await manager.handle(query(JobLogsQuery, job_id, **kw))
    assert isinstance(reply, JobLogs)
    return reply


# --------------------------------------------------------------------------- subprocess runner


async def test_a_successful_job_reports_output_and_artifacts(manager: JobManager) -> None:
    code = (
        "import os, pathlib; print('hello'); "
        "pathlib.Path('output/sub').mkdir(); "
        "pathlib.Path('output/result.txt').write_text('42'); "
        "pathlib.Path('output/sub/data.bin').write_bytes(bytes(range(256)) * 40)"
    )
    job = await run_to_end(manager, "ok", py(code))
    assert (job.state, job.exit_code) == ("succeeded", 0)
    info = job.info()
    assert info.started_at is not None and info.ended_at is not None
    assert info.ended_at >= info.started_at >= (info.submitted_at or 0)
    assert (await logs_of(manager, "ok")).logs.stdout == b"hello\n"
    result = await manager.handle(query(JobResultQuery, "ok"))
    assert isinstance(result, JobResult) and result.artifacts_omitted == 0
    by_name = {a.name: a for a in result.artifacts}
    assert sorted(by_name) == ["result.txt", "sub/data.bin"]
    blob = bytes(range(256)) * 40
    assert by_name["sub/data.bin"].size == len(blob)
    assert by_name["sub/data.bin"].sha256 == hashlib.sha256(blob).digest()
    # fetched in chunks, the bytes are the file's
    parts, offset = [], 0
    while True:
        chunk = await manager.handle(
            query(ArtifactQuery, "ok", name="sub/data.bin", offset=offset, limit=4000)
        )
        assert isinstance(chunk, ArtifactChunk) and chunk.offset == offset
        parts.append(chunk.data)
        offset += len(chunk.data)
        if chunk.eof:
            break
    assert b"".join(parts) == blob and len(parts) == 3


async def test_a_failing_job_keeps_its_exit_code_and_stderr(manager: JobManager) -> None:
    job = await run_to_end(manager, "bad", py("import sys; sys.stderr.write('boom'); sys.exit(3)"))
    assert (job.state, job.exit_code) == ("failed", 3)
    assert (await logs_of(manager, "bad")).logs.stderr == b"boom"


async def test_a_command_that_does_not_exist_fails_with_a_reason(manager: JobManager) -> None:
    job = await run_to_end(manager, "nope", spec("/nonexistent/binary", "x"))
    assert job.state == "failed" and job.exit_code is None
    assert "cannot start" in job.error


async def test_the_command_is_not_run_through_a_shell(manager: JobManager) -> None:
    job = await run_to_end(
        manager, "argv", py("import sys; print(sys.argv[1:])", "$HOME", "; rm -rf /", "`id`")
    )
    assert job.state == "succeeded"
    out = (await logs_of(manager, "argv")).logs.stdout
    assert out == b"['$HOME', '; rm -rf /', '`id`']\n"


async def test_environment_holds_only_the_jobs_variables_and_the_leased_gpus(
    manager: JobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_SECRET", "must-not-leak")
    job = await run_to_end(manager, "env", spec("/usr/bin/env", env={"MY_VAR": "value 1"}))
    assert job.state == "succeeded"
    lines = (await logs_of(manager, "env")).logs.stdout.decode().splitlines()
    assert sorted(lines) == sorted(
        [
            "MY_VAR=value 1",
            "CUDA_VISIBLE_DEVICES=GPU-aaaa-1111,GPU-bbbb-2222",
            "NVIDIA_VISIBLE_DEVICES=GPU-aaaa-1111,GPU-bbbb-2222",
        ]
    )


async def test_the_job_runs_in_its_own_directory_under_the_jobs_root(
    manager: JobManager,
) -> None:
    job = await run_to_end(manager, "cwd", py("import os; print(os.getcwd(), os.listdir('.'))"))
    out = (await logs_of(manager, "cwd")).logs.stdout.decode()
    expected = manager.root / lease_dir_name(LEASE) / "cwd"
    assert out.startswith(str(expected.resolve()) + " ")
    assert "'output'" in out
    assert job.paths.workdir == expected


async def test_output_beyond_the_cap_is_counted_and_dropped(tmp_path: Path) -> None:
    jobs = make_manager(tmp_path, max_output_bytes=100)
    await jobs.start()
    # 1 MB on each stream: the job must not block on a full pipe
    code = "import sys; sys.stdout.write('x' * 1_000_000); sys.stderr.write('y' * 1_000_000)"
    job = await run_to_end(jobs, "loud", py(code))
    info = job.info()
    assert job.state == "succeeded"
    assert (info.stdout_bytes, info.stderr_bytes) == (100, 100)
    assert info.stdout_truncated and info.stderr_truncated
    assert (jobs.root / lease_dir_name(LEASE) / "loud" / "stdout.log").stat().st_size == 100
    await jobs.close()


async def test_logs_are_served_from_offsets_while_the_job_runs(manager: JobManager) -> None:
    code = (
        "import sys, time\n"
        "print('first', flush=True)\n"
        "time.sleep(60)\n"
    )  # fmt: skip
    await manager.handle(submit("follow", py(code)), GPUS)
    await until(lambda: (job := manager.get(LEASE, "follow")) is not None
                and job.output is not None and job.output.stdout.kept == 6)  # fmt: skip
    slice1 = (await logs_of(manager, "follow")).logs
    assert (slice1.stdout, slice1.stdout_total, slice1.finished) == (b"first\n", 6, False)
    slice2 = (await logs_of(manager, "follow", stdout_offset=3, limit=2)).logs
    assert (slice2.stdout, slice2.stdout_offset) == (b"st", 3)
    past = (await logs_of(manager, "follow", stdout_offset=100)).logs
    assert past.stdout == b"" and past.stdout_total == 6
    await manager.handle(query(JobCancel, "follow"))
    job = await finished(manager, "follow")
    assert job.state == "cancelled"
    assert (await logs_of(manager, "follow")).logs.finished


async def test_a_job_past_its_timeout_is_stopped(manager: JobManager) -> None:
    job = await run_to_end(manager, "slow", py("import time; time.sleep(120)", timeout_s=1))
    assert job.state == "timed_out"
    assert job.exit_code == -signal.SIGTERM


async def test_cancel_sends_sigterm_then_sigkill_to_the_whole_group(tmp_path: Path) -> None:
    jobs = make_manager(tmp_path, stop_timeout_s=0.5)
    await jobs.start()
    pid_file = tmp_path / "child.pid"
    code = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # a job that ignores SIGTERM
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    await jobs.handle(submit("stubborn", py(code)), GPUS)
    await until(lambda: pid_file.exists() and pid_file.read_text() != "")
    await until(lambda: (job := jobs.get(LEASE, "stubborn")) is not None
                and job.output is not None and job.output.stdout.kept > 0)  # fmt: skip
    child = int(pid_file.read_text())
    reply = await jobs.handle(query(JobCancel, "stubborn"))
    assert isinstance(reply, JobStatus)
    assert reply.job.state == "running" and reply.job.cancel_requested
    job = await finished(jobs, "stubborn")
    assert job.state == "cancelled"
    assert job.exit_code == -signal.SIGKILL  # SIGTERM was ignored
    with pytest.raises(ProcessLookupError):  # the job's child went with it
        for _ in range(100):
            os.kill(child, 0)
            await asyncio.sleep(0.02)
    await jobs.close()


async def test_jobs_queue_beyond_max_parallel_and_a_queued_job_can_be_cancelled(
    tmp_path: Path,
) -> None:
    jobs = make_manager(tmp_path, max_parallel=1)
    await jobs.start()
    await jobs.handle(submit("first", py("import time; time.sleep(60)")), GPUS)
    await until(lambda: jobs.get(LEASE, "first").state == "running")  # type: ignore[union-attr]
    second = await jobs.handle(submit("second", py("print('never')")), GPUS)
    assert isinstance(second, JobAccepted) and second.job.state == "queued"
    status = await jobs.handle(query(JobCancel, "second"))
    assert isinstance(status, JobStatus) and status.job.state == "cancelled"
    await jobs.handle(query(JobCancel, "first"))
    assert (await finished(jobs, "first")).state == "cancelled"
    never = await finished(jobs, "second")
    assert never.started_at is None and never.output is None
    await jobs.close()


async def test_resubmission_is_idempotent_and_a_different_job_under_the_same_id_is_refused(
    manager: JobManager,
) -> None:
    job_spec = py("print(1)")
    first = await manager.handle(submit("same", job_spec), GPUS)
    again = await manager.handle(submit("same", job_spec), GPUS)
    assert isinstance(first, JobAccepted) and isinstance(again, JobAccepted)
    assert again.job.submitted_at == first.job.submitted_at
    other = await manager.handle(submit("same", py("print(2)")), GPUS)
    assert isinstance(other, JobRefused) and other.reason == "duplicate_job"
    assert len(manager.jobs(LEASE)) == 1
    await finished(manager, "same")


async def test_refusals_are_typed(tmp_path: Path) -> None:
    jobs = make_manager(tmp_path, max_jobs_per_lease=1)
    await jobs.start()
    assert isinstance(await jobs.handle(submit("a", py("pass")), GPUS), JobAccepted)
    cases = [
        (submit("b", py("pass")), GPUS, "too_many_jobs"),
        (submit("c", spec(), lease="other"), GPUS, "invalid_job"),  # no command: no image default
        (submit("d", py("pass"), lease="other"), (), "not_leased"),
        (query(JobStatusQuery, "zzz"), (), "unknown_job"),
        (query(JobCancel, "zzz"), (), "unknown_job"),
        (query(JobLogsQuery, "zzz"), (), "unknown_job"),
        (query(JobResultQuery, "zzz"), (), "unknown_job"),
        (query(ArtifactQuery, "a", name="missing.txt"), (), "unknown_artifact"),
        (query(JobStatusQuery, "a", lease="other"), (), "unknown_job"),
    ]
    await finished(jobs, "a")
    for request, gpus, reason in cases:
        reply = await jobs.handle(request, gpus)
        assert isinstance(reply, JobRefused), request
        assert reply.reason == reason
        assert (reply.request_id, reply.job_id) == (request.request_id, request.job_id)
    disabled = JobManager(None, tmp_path / "none", max_output_bytes=1024, max_artifact_bytes=1024)
    reply = await disabled.handle(submit("x", py("pass")), GPUS)
    assert isinstance(reply, JobRefused) and reply.reason == "runner_disabled"
    await jobs.close()


async def test_artifacts_over_the_cap_and_links_are_left_out(tmp_path: Path) -> None:
    jobs = make_manager(tmp_path, max_artifact_bytes=2500)
    await jobs.start()
    secret = tmp_path / "host-secret.txt"
    secret.write_text("the host's secret")
    code = (
        "import os\n"
        "open('output/a.bin', 'wb').write(b'a' * 1000)\n"
        "open('output/b.bin', 'wb').write(b'b' * 1000)\n"
        "open('output/c.bin', 'wb').write(b'c' * 1000)\n"  # over the 2500-byte cap
        f"os.symlink({str(secret)!r}, 'output/link.txt')\n"
        "os.symlink('/etc', 'output/etc')\n"
        "open('output/bad name.txt', 'w').write('x')\n"
    )
    job = await run_to_end(jobs, "many", py(code))
    assert job.state == "succeeded"
    assert [a.name for a in job.artifacts] == ["a.bin", "b.bin"]
    assert job.artifacts_omitted == 4  # c.bin (cap), link.txt, etc (links), 'bad name.txt'
    refused = await jobs.handle(query(ArtifactQuery, "many", name="link.txt"))
    assert isinstance(refused, JobRefused) and refused.reason == "unknown_artifact"
    await jobs.close()


async def test_a_listed_artifact_replaced_by_a_link_is_not_served(manager: JobManager) -> None:
    job = await run_to_end(manager, "swap", py("open('output/a.txt', 'w').write('fine')"))
    path = job.paths.output / "a.txt"
    path.unlink()
    path.symlink_to("/etc/hostname")
    with pytest.raises(Exception, match="cannot be read"):
        await manager.handle(query(ArtifactQuery, "swap", name="a.txt"))


async def test_purge_drops_finished_jobs_of_other_leases_with_their_files(
    manager: JobManager,
) -> None:
    await run_to_end(manager, "old", py("open('output/x', 'w').write('x')"))
    old_dir = manager.root / lease_dir_name(LEASE)
    assert old_dir.is_dir()
    await manager.handle(submit("new", py("import time; time.sleep(60)"), lease="L2"), GPUS)
    await manager.purge("L2")
    assert manager.get(LEASE, "old") is None and not old_dir.exists()
    assert manager.get("L2", "new") is not None  # the current lease is kept


async def test_start_clears_jobs_of_an_earlier_run_and_close_stops_running_jobs(
    tmp_path: Path,
) -> None:
    stale = tmp_path / "jobs" / "lease-stale" / "job"
    stale.mkdir(parents=True)
    jobs = make_manager(tmp_path)
    await jobs.start()
    assert not stale.exists() and jobs.root.is_dir()
    assert oct(jobs.root.stat().st_mode & 0o777) == "0o700"
    await jobs.handle(submit("long", py("import time; time.sleep(300)")), GPUS)
    await until(lambda: jobs.get(LEASE, "long").state == "running")  # type: ignore[union-attr]
    await jobs.close()
    assert jobs.get(LEASE, "long").state == "cancelled"  # type: ignore[union-attr]


def test_make_runner_follows_the_config() -> None:
    assert make_runner(JobsSection(runner="none")) is None
    sub = make_runner(JobsSection(runner="subprocess", allow_subprocess_runner=True))
    assert isinstance(sub, SubprocessRunner)
    docker = make_runner(
        JobsSection(docker_command="/opt/docker", stop_timeout_s=3, allow_network=True)
    )
    assert isinstance(docker, DockerRunner)
    assert (docker.docker_command, docker.stop_timeout_s, docker.allow_network) == (
        "/opt/docker",
        3,
        True,
    )
    with pytest.raises(ValidationError, match="allow_subprocess_runner"):
        JobsSection(runner="subprocess")


# --------------------------------------------------------------------------- job specs


def test_job_spec_bounds() -> None:
    with pytest.raises(ValidationError, match="CUDA_VISIBLE_DEVICES"):
        spec("x", env={"CUDA_VISIBLE_DEVICES": "0"})
    with pytest.raises(ValidationError, match="line breaks"):
        spec("x", env={"A": "two\nlines"})
    with pytest.raises(ValidationError, match="NUL"):
        spec("x\0y")
    with pytest.raises(ValidationError):
        JobSpec(image="--privileged", command=["x"], timeout_s=1)  # an option, not an image
    with pytest.raises(ValidationError, match="longer than"):
        spec(*["x" * 8000] * 20)
    with pytest.raises(ValidationError):
        spec("x", timeout_s=0)
    with pytest.raises(ValidationError):
        spec("x", env={f"V{i}": "x" for i in range(129)})


@settings(max_examples=200, deadline=None)
@given(image=st.text(max_size=40), name=st.text(max_size=20), value=st.text(max_size=20))
def test_job_specs_either_validate_or_raise_a_validation_error(
    image: str, name: str, value: str
) -> None:
    try:
        job_spec = JobSpec(image=image, command=["x"], env={name: value}, timeout_s=5)
    except ValidationError:
        return
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*", job_spec.image)
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
    assert "\n" not in value and "\0" not in value


# --------------------------------------------------------------------------- docker: command lines


def job_run(tmp_path: Path, job_spec: JobSpec, gpus: tuple[str, ...] = GPUS) -> JobRun:
    return JobRun(LEASE, "job-7", job_spec, gpus, JobPaths.under(tmp_path, LEASE, "job-7"))


def test_docker_run_command_line_is_exact(tmp_path: Path) -> None:
    job_spec = JobSpec(
        image="ghcr.io/acme/train:1.2",
        command=["python", "train.py", "--epochs", "3"],
        env={"WANDB_KEY": "k"},
        timeout_s=3600,
        limits=JobLimits(memory_bytes=8 << 30, cpu_millis=1500, pids=512, network="bridge"),
    )
    run = job_run(tmp_path, job_spec)
    name = container_name(run)
    output = tmp_path / lease_dir_name(LEASE) / "job-7" / "output"
    env_file = tmp_path / "env.list"
    assert docker_run_argv("/usr/bin/docker", run, env_file=env_file, allow_network=True) == [
        "/usr/bin/docker", "run", "--rm", "--name", name,
        "--label", "byteleap.lease=lease-1", "--label", "byteleap.job=job-7",
        "--gpus", '"device=GPU-aaaa-1111,GPU-bbbb-2222"',
        "--network", "bridge",
        "--memory", str(8 << 30),
        "--cpus", "1.5",
        "--pids-limit", "512",
        "--security-opt", "no-new-privileges",
        "--env-file", str(env_file),
        "-v", f"{output}:/output",
        "ghcr.io/acme/train:1.2", "python", "train.py", "--epochs", "3",
    ]  # fmt: skip
    # defaults: no network unless allowed, default process cap, no memory/cpu flags, no env file
    plain = job_run(tmp_path, JobSpec(image="alpine", timeout_s=5), gpus=("GPU-x",))
    assert docker_run_argv("docker", plain, env_file=None) == [
        "docker", "run", "--rm", "--name", container_name(plain),
        "--label", "byteleap.lease=lease-1", "--label", "byteleap.job=job-7",
        "--gpus", '"device=GPU-x"', "--network", "none", "--pids-limit", "4096",
        "--security-opt", "no-new-privileges", "-v", f"{output}:/output", "alpine",
    ]  # fmt: skip
    assert "--network" in docker_run_argv("d", run, env_file=None, allow_network=False)
    assert docker_run_argv("d", run, env_file=None)[docker_run_argv("d", run, env_file=None)
                                                    .index("--network") + 1] == "none"  # fmt: skip


def test_docker_helpers() -> None:
    assert [cpus_value(m) for m in (1500, 2000, 10, 250, 1001)] == ["1.5", "2", "0.01", "0.25",
                                                                    "1.001"]  # fmt: skip
    assert env_file_text({"B": "2", "A": "x=y"}) == "A=x=y\nB=2\n"
    assert gpu_devices(("CPU-123", "GPU-a", "MIG-b")) == ["GPU-a", "MIG-b"]
    run = JobRun("..", "j.1-x", spec("x"), GPUS, JobPaths(Path("/tmp/x")))
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", container_name(run))
    assert lease_dir_name("..") != ".." and "/" not in lease_dir_name("a/b")


# --------------------------------------------------------------------------- docker: a fake CLI

FAKE_DOCKER = r"""#!{python}
import json, os, signal, subprocess, sys, time

STATE = {state!r}
PRESENT = {present!r}
args = sys.argv[1:]


def record(**extra):
    cli_env = sorted(os.environ)
    with open(os.path.join(STATE, "calls.jsonl"), "a") as log:
        log.write(json.dumps({{"argv": args, "env": cli_env, **extra}}) + "\n")


def pid_of(name):
    try:
        return int(open(os.path.join(STATE, name + ".pid")).read())
    except (OSError, ValueError):
        return None


if args[:2] == ["image", "inspect"]:
    record()
    sys.exit(0 if args[2] in PRESENT else 1)
if args[0] == "pull":
    record()
    if "missing" in args[1]:
        sys.stderr.write("Error response from daemon: manifest unknown\n")
        sys.exit(1)
    if "slow" in args[1]:
        time.sleep(60)
    sys.exit(0)
if args[0] in ("stop", "kill"):
    record()
    name = args[-1]
    pid = pid_of(name)
    if pid is not None:
        group = os.getpgid(pid)
        if args[0] == "stop":
            os.killpg(group, signal.SIGTERM)
            deadline = time.time() + float(args[2])
            while time.time() < deadline and pid_of(name) is not None:
                time.sleep(0.02)
        if pid_of(name) is not None:
            os.killpg(group, signal.SIGKILL)
    sys.exit(0)
if args[0] == "run":
    with_value = {{"--name", "--label", "--gpus", "--network", "--memory", "--cpus",
                   "--pids-limit", "--security-opt", "--env-file", "-v"}}
    opts, i = {{}}, 1
    while args[i].startswith("-"):
        if args[i] in with_value:
            opts.setdefault(args[i], []).append(args[i + 1])
            i += 2
        else:
            i += 1
    image, command = args[i], args[i + 1:]
    env = {{"PATH": os.environ.get("PATH", "/usr/bin:/bin")}}
    env_text = None
    if "--env-file" in opts:
        env_text = open(opts["--env-file"][0]).read()
        env.update(line.split("=", 1) for line in env_text.splitlines())
    host, _, target = opts["-v"][0].rpartition(":")
    command = [part.replace(target, host) for part in command]
    record(env_file=env_text)
    if image.startswith("broken"):
        sys.stderr.write("docker: Error response from daemon: could not select device driver\n")
        sys.exit(125)
    name = opts["--name"][0]
    pid_file = os.path.join(STATE, name + ".pid")
    open(pid_file, "w").write(str(os.getpid()))
    # the container gets SIGTERM, the client waits for it (a handler, unlike SIG_IGN, is not
    # inherited across exec)
    signal.signal(signal.SIGTERM, lambda *_: None)
    child = subprocess.Popen(command, env=env)
    code = child.wait()
    os.unlink(pid_file)
    sys.exit(128 - code if code < 0 else code)
sys.exit(2)
"""


class FakeDocker:
    def __init__(self, root: Path, present: tuple[str, ...] = ()) -> None:
        self.bin = root / "bin"
        self.state = root / "docker-state"
        self.bin.mkdir()
        self.state.mkdir()
        script = self.bin / "docker"
        script.write_text(
            FAKE_DOCKER.format(python=PY, state=str(self.state), present=list(present))
        )
        script.chmod(0o755)

    def calls(self) -> list[dict[str, Any]]:
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def commands(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    fake = FakeDocker(tmp_path, present=("local/present:1",))
    monkeypatch.setenv("PATH", f"{fake.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/fake-docker.sock")
    monkeypatch.setenv("WORKER_SECRET", "must-not-reach-the-docker-cli")
    return fake


async def docker_manager(tmp_path: Path, **runner_kw: Any) -> JobManager:
    runner_kw.setdefault("stop_timeout_s", 1.0)
    jobs = make_manager(tmp_path, DockerRunner(**runner_kw))
    await jobs.start()
    return jobs


async def test_docker_job_pulls_runs_and_collects_output(
    tmp_path: Path, fake_docker: FakeDocker
) -> None:
    jobs = await docker_manager(tmp_path)
    code = (
        "import os; print('in container', os.environ['TOKEN']); "
        "open('/output/model.txt', 'w').write('weights')"
    )
    job_spec = JobSpec(
        image="acme/train:1", command=[PY, "-c", code], env={"TOKEN": "t0k"}, timeout_s=60
    )
    job = await run_to_end(jobs, "train", job_spec)
    assert (job.state, job.exit_code) == ("succeeded", 0), job.error
    assert (await logs_of(jobs, "train")).logs.stdout == b"in container t0k\n"
    assert [a.name for a in job.artifacts] == ["model.txt"]
    inspect, pull, run = fake_docker.calls()
    assert inspect["argv"] == ["image", "inspect", "acme/train:1"]
    assert pull["argv"] == ["pull", "acme/train:1"]
    env_file = job.paths.env_file
    expected = docker_run_argv(str(fake_docker.bin / "docker"), JobRun(
        LEASE, "train", job_spec, GPUS, job.paths), env_file=env_file)[1:]  # fmt: skip
    assert run["argv"] == expected
    assert run["env_file"] == "TOKEN=t0k\n"
    assert not env_file.exists()  # the job's secrets do not stay on disk
    # the CLI sees the worker's docker settings and nothing else
    assert "DOCKER_HOST" in run["env"] and "PATH" in run["env"]
    assert "WORKER_SECRET" not in run["env"] and "TOKEN" not in run["env"]
    await jobs.close()


async def test_docker_skips_the_pull_of_a_present_image_and_reports_exit_codes(
    tmp_path: Path, fake_docker: FakeDocker
) -> None:
    jobs = await docker_manager(tmp_path)
    job_spec = JobSpec(image="local/present:1", command=[PY, "-c", "exit(4)"], timeout_s=60)
    job = await run_to_end(jobs, "four", job_spec)
    assert (job.state, job.exit_code) == ("failed", 4)
    assert [argv[0] for argv in fake_docker.commands()] == ["image", "run"]
    await jobs.close()


async def test_docker_that_cannot_start_the_container_is_a_failure_with_a_reason(
    tmp_path: Path, fake_docker: FakeDocker
) -> None:
    jobs = await docker_manager(tmp_path)
    job = await run_to_end(jobs, "d125", JobSpec(image="broken/gpu", command=["x"], timeout_s=9))
    assert (job.state, job.exit_code) == ("failed", 125)
    assert "docker could not run the container" in job.error
    assert b"could not select device driver" in (await logs_of(jobs, "d125")).logs.stderr
    await jobs.close()


async def test_a_failed_or_slow_pull_fails_the_job(tmp_path: Path, fake_docker: FakeDocker) -> None:
    jobs = await docker_manager(tmp_path, pull_timeout_s=0.5)
    missing = await run_to_end(jobs, "m", JobSpec(image="acme/missing", command=["x"], timeout_s=9))
    assert missing.state == "failed" and "manifest unknown" in missing.error
    slow = await run_to_end(jobs, "s", JobSpec(image="acme/slow", command=["x"], timeout_s=9))
    assert slow.state == "failed" and "timed out" in slow.error
    assert not any(argv[0] == "run" for argv in fake_docker.commands())
    await jobs.close()


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_a_container_is_stopped_with_docker_stop(
    tmp_path: Path, fake_docker: FakeDocker, how: str
) -> None:
    jobs = await docker_manager(tmp_path, stop_timeout_s=2.0)
    code = "import time; print('up', flush=True); time.sleep(300)"
    job_spec = JobSpec(
        image="local/present:1", command=[PY, "-c", code], timeout_s=1 if how == "timeout" else 600
    )
    await jobs.handle(submit("long", job_spec), GPUS)
    await until(lambda: (job := jobs.get(LEASE, "long")) is not None
                and job.output is not None and job.output.stdout.kept == 3)  # fmt: skip
    if how == "cancel":
        await jobs.handle(query(JobCancel, "long"))
    job = await finished(jobs, "long")
    assert job.state == ("cancelled" if how == "cancel" else "timed_out")
    name = container_name(JobRun(LEASE, "long", job_spec, GPUS, job.paths))
    assert ["stop", "-t", "2", name] in fake_docker.commands()
    assert job.exit_code == 143  # docker run's status for a container ended by SIGTERM
    await jobs.close()


async def test_docker_network_is_refused_unless_allowed_and_a_missing_cli_fails(
    tmp_path: Path, fake_docker: FakeDocker
) -> None:
    jobs = await docker_manager(tmp_path)
    wants_net = JobSpec(image="a", command=["x"], timeout_s=5, limits=JobLimits(network="bridge"))
    reply = await jobs.handle(submit("net", wants_net), GPUS)
    assert isinstance(reply, JobRefused) and reply.reason == "invalid_job"
    assert "allow_network" in reply.message
    await jobs.close()
    allowed = await docker_manager(tmp_path / "allowed", allow_network=True)
    job = await run_to_end(allowed, "net", wants_net.model_copy(update={"image": "local/present:1",
                           "command": [PY, "-c", "pass"]}))  # fmt: skip
    run_argv = next(a for a in fake_docker.commands() if a[0] == "run")
    assert run_argv[run_argv.index("--network") + 1] == "bridge" and job.state == "succeeded"
    await allowed.close()
    gone = await docker_manager(tmp_path / "gone", docker_command="no-such-docker-cli")
    job = await run_to_end(gone, "x", JobSpec(image="a", command=["x"], timeout_s=5))
    assert job.state == "failed" and "not found" in job.error
    await gone.close()
