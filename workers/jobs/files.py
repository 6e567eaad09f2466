"""A job's files: its directory layout, size-capped output logs, and its artifacts.

Everything a job leaves behind is untrusted: a container writes ``output/`` as root and may
plant symbolic links to host files there, hoping the worker follows them when it lists or serves
artifacts. So artifacts are regular files only, found without following links, opened with
``O_NOFOLLOW`` below a directory whose real path is checked, and hashed while they are read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from byteleap.errors import WorkerFailure
from byteleap.protocol.worker_link.jobs import MAX_ARTIFACTS, ArtifactInfo, ArtifactName

_ARTIFACT_NAME: TypeAdapter[str] = TypeAdapter(ArtifactName)
_READ_CHUNK = 1024 * 1024


def lease_dir_name(lease_id: str) -> str:
    """The directory of a lease's jobs: a hash, because a lease id may be ``..``."""
    return "lease-" + hashlib.sha256(lease_id.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class JobPaths:
    """Where one job's files live: ``<jobs root>/lease-<hash>/<job_id>/``."""

    workdir: Path

    @classmethod
    def under(cls, root: Path, lease_id: str, job_id: str) -> JobPaths:
        return cls(root / lease_dir_name(lease_id) / job_id)

    @property
    def output(self) -> Path:
        """The job writes its artifacts here (``/output`` inside a container)."""
        return self.workdir / "output"

    @property
    def stdout(self) -> Path:
        return self.workdir / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.workdir / "stderr.log"

    @property
    def env_file(self) -> Path:
        """The job's environment for ``docker run --env-file`` (mode 0600)."""
        return self.workdir / "env.list"

    def create(self) -> None:
        """A fresh, empty directory (a leftover of an earlier run is removed first)."""
        if self.workdir.exists():
            remove_tree(self.workdir)
        self.output.mkdir(parents=True, mode=0o755)
        self.workdir.chmod(0o700)
        self.output.chmod(0o777)  # a container may write as any user


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything below it, never following links out of it."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
        return
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- output


class CappedLog:
    """One output stream written to a file, keeping at most ``cap`` bytes.

    The process's pipe is drained to the end either way (a blocked writer would hang the job);
    bytes past the cap are counted and dropped. The file is unbuffered, so a reader sees what
    was written at once.
    """

    def __init__(self, path: Path, cap: int) -> None:
        self.path = path
        self.cap = cap
        self.kept = 0
        self.seen = 0
        self._file = path.open("wb", buffering=0)

    def write(self, data: bytes) -> None:
        self.seen += len(data)
        room = self.cap - self.kept
        if room > 0 and data:
            chunk = data[:room]
            self._file.write(chunk)
            self.kept += len(chunk)

    @property
    def truncated(self) -> bool:
        return self.seen > self.kept

    def close(self) -> None:
        self._file.close()


@dataclass
class JobOutput:
    """Both streams of one job; the counters are live while the job runs."""

    stdout: CappedLog
    stderr: CappedLog

    @classmethod
    def open(cls, paths: JobPaths, cap: int) -> JobOutput:
        return cls(CappedLog(paths.stdout, cap), CappedLog(paths.stderr, cap))

    def close(self) -> None:
        self.stdout.close()
        self.stderr.close()


def read_slice(path: Path, offset: int, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``path`` from ``offset``; empty past the end or when missing."""
    if limit <= 0:
        return b""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(limit)
    except FileNotFoundError:
        return b""


# --------------------------------------------------------------------------- artifacts


def _hash_file(fd: int) -> tuple[int, bytes]:
    digest = hashlib.sha256()
    size = 0
    while True:
        block = os.read(fd, _READ_CHUNK)
        if not block:
            return size, digest.digest()
        size += len(block)
        digest.update(block)


def _open_regular(path: Path) -> int:
    """A read-only descriptor of ``path``, refusing links and anything but a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def list_artifacts(
    output: Path, max_total_bytes: int, max_count: int = MAX_ARTIFACTS
) -> tuple[list[ArtifactInfo], int]:
    """The regular files below ``output`` (sorted by name) and how many files were left out.

    Left out: links, devices and other non-regular files, names the protocol cannot carry,
    unreadable files, and whatever would take the listing past ``max_total_bytes`` or
    ``max_count``.
    """
    listed: list[ArtifactInfo] = []
    omitted = 0
    total = 0
    if not output.is_dir() or output.is_symlink():
        return listed, 0
    root = os.path.realpath(output)
    candidates: list[str] = []
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        omitted += sum(1 for d in dirnames if os.path.islink(os.path.join(directory, d)))
        for name in filenames:
            candidates.append(os.path.relpath(os.path.join(directory, name), root))
    for rel in sorted(candidates):
        name = rel.replace(os.sep, "/")
        try:
            _ARTIFACT_NAME.validate_python(name)
        except ValidationError:
            omitted += 1
            continue
        try:
            fd = _open_regular(Path(root) / rel)
        except OSError:
            omitted += 1
            continue
        try:
            if len(listed) >= max_count or total + os.fstat(fd).st_size > max_total_bytes:
                omitted += 1
                continue
            size, digest = _hash_file(fd)
        except OSError:
            omitted += 1
            continue
        finally:
            os.close(fd)
        if total + size > max_total_bytes:  # it grew while we read it
            omitted += 1
            continue
        total += size
        listed.append(ArtifactInfo(name=name, size=size, sha256=digest))
    return listed, omitted


def read_artifact(output: Path, name: str, offset: int, limit: int) -> bytes:
    """Up to ``limit`` bytes of artifact ``name`` from ``offset``; ``WorkerFailure`` if it cannot
    be read safely (gone, replaced by a link, or outside ``output``)."""
    root = os.path.realpath(output)
    path = Path(root) / name
    parent = os.path.realpath(path.parent)
    if parent != root and not parent.startswith(root + os.sep):
        raise WorkerFailure(f"artifact {name} is no longer below the job's output directory")
    try:
        fd = _open_regular(path)
    except OSError as exc:
        raise WorkerFailure(f"artifact {name} cannot be read: {exc.strerror or exc}") from None
    try:
        return os.pread(fd, limit, offset)
    finally:
        os.close(fd)


__all__ = [
    "CappedLog",
    "JobOutput",
    "JobPaths",
    "lease_dir_name",
    "list_artifacts",
    "read_artifact",
    "read_slice",
    "remove_tree",
]
