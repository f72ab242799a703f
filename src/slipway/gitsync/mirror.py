"""The bare mirror on local disk: running git, fetching one branch, reading trees and blobs.

git runs from argv lists (no shell) with a clean environment (through :mod:`slipway.childenv`:
the search path, a temp folder, proxy and certificate settings, and git's own variables): no
system or global config, an empty ``HOME`` (so no ``.netrc`` or credential helper is consulted),
no terminal prompts, and a timeout that kills the whole process group. The token travels only
in the environment, as an ``http.extraHeader`` config entry
(``GIT_CONFIG_COUNT``/``KEY``/``VALUE``): never in a URL, never in argv, and it is scrubbed from
every message this module raises.

The mirror also keeps Slipway's own small files beside git's: ``slipway.lock`` (one fetch or
apply at a time), ``slipway-state.json`` (the last commit synced into each workspace, and
whether an apply is unfinished) and ``slipway-home/`` (the empty ``HOME``).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from slipway.childenv import CERTIFICATES, PROXIES, child_environment
from slipway.gitsync.changes import BranchNotFound, FetchError, SyncError
from slipway.processes import kill_process_group

CHUNK = 1024 * 1024
LOCK_WAIT_SECONDS = 600
LOCAL_TIMEOUT = 300  # git commands that only read the mirror
_LOCK_NAME = "slipway.lock"
_STATE_NAME = "slipway-state.json"
_HOME_NAME = "slipway-home"
# What git inherits from the worker: the search path, a temp folder, and what reaching the
# network may need; the rest of its environment it is given (see Git.env).
_INHERITED = ("PATH", "TMPDIR", *PROXIES, *CERTIFICATES)
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def safe_url(url: str) -> str:
    """The URL with any user/password part removed, fit for messages."""
    return _USERINFO.sub(r"\1", url)


def check_remote_url(url: str) -> None:
    if not url or url.startswith("-") or any(ch in url for ch in "\0\n\r"):
        raise SyncError("the repository URL is not valid")
    if re.match(r"(?i)^https?://[^/]*@", url):
        raise SyncError(
            f"the repository URL {safe_url(url)} holds credentials; give the URL without them and pass the token separately"
        )


def check_branch(branch: str) -> None:
    """Refuse what git would not accept as a branch name (and anything that looks like an option)."""
    bad = (
        not branch
        or branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or ".." in branch
        or "//" in branch
        or "@{" in branch
        or branch == "@"
        or re.search(r"[\x00-\x20\x7f~^:?*\[\\]", branch) is not None
        or "/." in branch
        or ".lock/" in branch
    )
    if bad:
        raise SyncError(f"{branch[:100]!r} is not a valid branch name")


def _git_binary() -> str:
    found = shutil.which("git")
    if found is None:
        raise SyncError("git is not installed on this machine")
    return found


class Git:
    """git commands against the bare repository ``git_dir``."""

    def __init__(self, git_dir: Path, *, token: str | None = None) -> None:
        self.git_dir = git_dir
        self._token = token or None
        header = ""
        if self._token:
            basic = base64.b64encode(f"x-access-token:{self._token}".encode()).decode("ascii")
            header = f"Authorization: Basic {basic}"
        self._secrets = [s for s in (self._token, header, header.split(" ")[-1] if header else "") if s]
        self._header = header

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def env(self) -> dict[str, str]:
        home = self.git_dir / _HOME_NAME
        env = dict(
            HOME=str(home),
            LC_ALL="C",
            LANG="C",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_TERMINAL_PROMPT="0",
            GIT_SSH_COMMAND="ssh -o BatchMode=yes",
            # ext:: and friends run commands; only plain transports are allowed.
            GIT_ALLOW_PROTOCOL="https:http:ssh:git:file",
            GIT_HTTP_LOW_SPEED_LIMIT="1000",
            GIT_HTTP_LOW_SPEED_TIME="60",
        )
        if self._header:
            env.update(
                GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader", GIT_CONFIG_VALUE_0=self._header
            )
        return child_environment(env, inherit=_INHERITED)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _USERINFO.sub(r"\1", text)

    def _argv(self, args: list[str], *, bare: bool = True) -> list[str]:
        prefix = [f"--git-dir={self.git_dir}"] if bare else []
        return [_git_binary(), *prefix, "-c", "gc.autoDetach=false", "-c", "core.quotePath=false", *args]

    def run(
        self, args: list[str], *, timeout: float = LOCAL_TIMEOUT, bare: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run git (in ``cwd``, by default the repository); returns the completed process whatever
        its exit code (``TimeoutError`` on timeout)."""
        (self.git_dir / _HOME_NAME).mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            self._argv(args, bare=bare),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(),
            cwd=cwd or self.git_dir,
            start_new_session=True,  # its helpers (git-remote-https, index-pack) die with it
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process_group(proc)
            proc.communicate()
            raise TimeoutError(f"git {args[0]} took longer than {timeout:.0f} s") from None
        except BaseException:
            kill_process_group(proc)
            proc.wait()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def check(self, args: list[str], *, timeout: float = LOCAL_TIMEOUT) -> bytes:
        try:
            done = self.run(args, timeout=timeout)
        except TimeoutError as exc:
            raise SyncError(str(exc)) from None
        if done.returncode != 0:
            raise SyncError(f"git {args[0]} failed: {self.scrub(_tail(done.stderr))}")
        return done.stdout

    def popen(self, args: list[str]) -> subprocess.Popen[bytes]:
        (self.git_dir / _HOME_NAME).mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            self._argv(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env(),
            cwd=self.git_dir,
            bufsize=CHUNK,
            start_new_session=True,
        )

    # ------------------------------------------------------------------ queries

    def resolve(self, rev: str) -> str | None:
        """The commit ``rev`` names in the mirror, or None."""
        if not rev or rev.startswith("-"):
            return None
        done = self.run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"])
        sha = done.stdout.decode("ascii", "replace").strip()
        return sha if done.returncode == 0 and _SHA.match(sha) else None

    def is_ancestor(self, base: str, head: str) -> bool:
        return self.run(["merge-base", "--is-ancestor", base, head]).returncode == 0

    def ls_tree(self, commit: str, *, sizes: bool) -> Iterator[tuple[str, str, int, bytes]]:
        """``(mode, oid, size, path)`` of every entry below the commit's root tree (size -1 unless asked)."""
        out = self.check(["ls-tree", "-r", "-z", "--full-tree", *(["-l"] if sizes else []), commit])
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            fields = meta.decode("ascii").split()
            size = int(fields[3]) if sizes and len(fields) > 3 and fields[3] != "-" else -1
            yield fields[0], fields[2], size, path

    def diff(self, base: str, head: str) -> list[RawChange]:
        """The change from ``base`` to ``head`` with exact and similar renames detected."""
        out = self.check(["diff-tree", "-r", "-z", "-M", "--no-abbrev", "--raw", base, head])
        return parse_raw_diff(out)


@dataclass(frozen=True)
class RawChange:
    status: str  # A, M, D, T, R, C (U and X should never appear between two commits)
    score: int  # similarity for R and C, else 0
    old_mode: str
    new_mode: str
    old_oid: str
    new_oid: str
    src: bytes  # path before (same as dst unless R or C)
    dst: bytes


def parse_raw_diff(out: bytes) -> list[RawChange]:
    """Parse ``git diff-tree --raw -z`` output."""
    fields = out.split(b"\0")
    changes: list[RawChange] = []
    index = 0
    while index < len(fields):
        meta = fields[index]
        index += 1
        if not meta:
            continue
        if not meta.startswith(b":"):
            raise SyncError(f"unexpected output from git diff-tree: {meta[:80]!r}")
        old_mode, new_mode, old_oid, new_oid, status = meta[1:].decode("ascii").split()
        letter, score = status[0], int(status[1:] or 0)
        src = fields[index]
        index += 1
        dst = src
        if letter in "RC":
            dst = fields[index]
            index += 1
        changes.append(RawChange(letter, score, old_mode, new_mode, old_oid, new_oid, src, dst))
    return changes


def _tail(stderr: bytes, lines: int = 4) -> str:
    text = stderr.decode("utf-8", "replace").strip().splitlines()
    return " / ".join(line.strip() for line in text[-lines:] if line.strip()) or "no message"


# ---------------------------------------------------------------------------------- fetch


def ensure_mirror(git: Git) -> None:
    if (git.git_dir / "HEAD").exists() and (git.git_dir / "objects").is_dir():
        return
    git.git_dir.mkdir(parents=True, exist_ok=True)
    # No templates: no sample hooks, nothing but what a bare repository needs.
    done = git.run(["init", "--bare", "--quiet", "--template=", str(git.git_dir)], bare=False)
    if done.returncode != 0:
        raise SyncError(f"cannot create the mirror in {git.git_dir}: {_tail(done.stderr)}")


def fetch_branch(git: Git, remote_url: str, branch: str, *, timeout: float) -> str:
    """Fetch ``refs/heads/<branch>`` into the mirror and return its head commit."""
    ref = f"refs/heads/{branch}"
    ensure_mirror(git)
    # The first fetch takes the head alone; later ones bring the commits since, joined to
    # what the mirror has, so ``base`` is an ancestor of the new head after a plain push.
    shallow = git.resolve(ref) is None
    args = ["fetch", "--prune", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head"]
    if shallow:
        args.append("--depth=1")
    args += ["--end-of-options", remote_url, f"+{ref}:{ref}"]
    where = safe_url(remote_url)
    try:
        done = git.run(args, timeout=timeout)
    except TimeoutError:
        raise FetchError(f"fetching {where} timed out after {timeout:.0f} s") from None
    if done.returncode != 0:
        said = git.scrub(_tail(done.stderr))
        lowered = said.lower()
        if "couldn't find remote ref" in lowered:
            raise BranchNotFound(f"branch {branch!r} does not exist in {where}")
        if any(
            marker in lowered
            for marker in ("authentication failed", "could not read username", "could not read password")
        ) or re.search(r"\b40[13]\b", lowered):
            if git.has_token:
                raise FetchError(
                    f"{where} refused the token (check that it is valid and can read the repository): {said}"
                )
            raise FetchError(f"{where} asks for credentials and no token was given: {said}")
        raise FetchError(f"fetching {where} failed: {said}")
    head = git.resolve(ref)
    if head is None:
        raise FetchError(f"fetching {where} did not bring branch {branch!r}")
    return head


# ---------------------------------------------------------------------------------- blobs


class BlobStream:
    """Blob contents from one ``git cat-file --batch``, in the order the ids were given.

    A feeder thread writes the ids while the caller reads, so neither pipe fills up; contents
    are read in pieces, never whole unless asked.
    """

    def __init__(self, git: Git, oids: list[str]) -> None:
        self._proc = git.popen(["cat-file", "--batch", "--buffer"])  # no flush per object
        self._left = 0
        self._feeder = threading.Thread(target=self._feed, args=(oids,), daemon=True)
        self._feeder.start()

    def _feed(self, oids: list[str]) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            for oid in oids:
                stdin.write(oid.encode("ascii") + b"\n")
            stdin.close()
        except (OSError, ValueError):
            pass  # the reader stopped early and closed the process

    def open(self, oid: str) -> int:
        """Start reading the next blob (which must be ``oid``); returns its size."""
        stdout = self._proc.stdout
        assert stdout is not None
        if self._left:
            raise SyncError("internal error: the previous blob was not read to its end")
        header = stdout.readline().split()
        if len(header) != 3 or header[0].decode("ascii", "replace") != oid or header[1] != b"blob":
            raise SyncError(f"the mirror cannot give blob {oid} (git answered {b' '.join(header)[:80]!r})")
        self._left = int(header[2])
        if self._left == 0:
            stdout.read(1)  # the newline after the (empty) content
        return self._left

    def read(self, limit: int = CHUNK) -> bytes:
        stdout = self._proc.stdout
        assert stdout is not None
        if not self._left:
            return b""
        chunk = stdout.read(min(limit, self._left))
        if not chunk:
            raise SyncError("git cat-file stopped in the middle of a blob")
        self._left -= len(chunk)
        if not self._left:
            stdout.read(1)
        return chunk

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self._proc.stdout is not None
                self._proc.stdout.close()
            kill_process_group(self._proc)
        self._proc.wait()
        self._feeder.join(timeout=5)

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------- lock & state


@contextlib.contextmanager
def locked(git_dir: Path, *, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the mirror's lock (one fetch or apply at a time, across processes)."""
    git_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(git_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise SyncError(f"another sync has held the mirror for over {wait:.0f} s") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


def workspace_key(workspace: Path) -> str:
    return os.path.abspath(workspace)


def read_state(git_dir: Path) -> dict[str, dict[str, str | None]]:
    try:
        data = json.loads((git_dir / _STATE_NAME).read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    workspaces = data.get("workspaces") if isinstance(data, dict) else None
    return workspaces if isinstance(workspaces, dict) else {}


def update_state(git_dir: Path, workspace: Path, **fields: str | None) -> None:
    """Set fields of the workspace's record (durably: temp file, fsync, rename)."""
    workspaces = read_state(git_dir)
    record = dict(workspaces.get(workspace_key(workspace)) or {})
    record.update(fields)
    workspaces[workspace_key(workspace)] = record
    temp = git_dir / f".{_STATE_NAME}.{uuid.uuid4().hex}"
    body = json.dumps({"version": 1, "workspaces": workspaces}, indent=1, sort_keys=True).encode()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, git_dir / _STATE_NAME)
    dir_fd = os.open(git_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
