"""Real git repositories for the sync tests: a working repository, its bare remote, HTTP serving.

``Repo`` holds a working repository and a bare "remote" beside it; tests write files, commit
and push, then sync from ``repo.url`` (``file://``) or from ``GitHttpServer`` (``http://``
on 127.0.0.1, served by ``git http-backend`` as CGI, requiring ``Authorization: Basic``
with a test token). ``assert_mirrors`` compares a workspace with ``git archive`` of a commit.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import stat
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Slipway Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Slipway Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "LC_ALL": "C",
}


def git(cwd: Path, *args: str, input: bytes | None = None) -> bytes:
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, input=input, capture_output=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


class Repo:
    """A working repository (``work``) and its bare remote (``bare``), branch ``main``."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.root = root
        self.branch = branch
        self.bare = root / "remote.git"
        self.work = root / "work"
        root.mkdir(parents=True, exist_ok=True)
        git(root, "init", "--quiet", "--bare", f"--initial-branch={branch}", str(self.bare))
        git(root, "init", "--quiet", f"--initial-branch={branch}", str(self.work))
        git(self.work, "config", "core.autocrlf", "false")

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    # ---------------------------------------------------------------- editing

    def write(self, path: str, data: bytes | str = b"") -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)

    def write_many(self, files: dict[str, bytes | str]) -> None:
        for path, data in files.items():
            self.write(path, data)

    def remove(self, path: str) -> None:
        target = self.work / path
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()

    def move(self, source: str, target: str) -> None:
        (self.work / target).parent.mkdir(parents=True, exist_ok=True)
        git(self.work, "mv", source, target)

    def symlink(self, path: str, target: str) -> None:
        link = self.work / path
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)

    def submodule(self, path: str, commit: str = "1" * 40) -> None:
        """A gitlink entry (what a submodule is in the tree), left unpopulated."""
        (self.work / path).mkdir(parents=True, exist_ok=True)
        git(self.work, "update-index", "--add", "--cacheinfo", f"160000,{commit},{path}")

    def commit(self, message: str = "change") -> str:
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def push(self, *, force: bool = False) -> str:
        git(
            self.work,
            "push",
            "--quiet",
            *(["--force"] if force else []),
            str(self.bare),
            f"HEAD:refs/heads/{self.branch}",
        )
        return self.head()

    def commit_push(self, message: str = "change") -> str:
        self.commit(message)
        return self.push()

    def reset_to(self, commit: str) -> None:
        """Move the branch to ``commit`` and force-push it (back or forth in its history)."""
        git(self.work, "reset", "--hard", "--quiet", commit)
        self.push(force=True)

    def head(self) -> str:
        return git(self.work, "rev-parse", "HEAD").decode().strip()

    def rewrite_last(self, message: str = "rewritten") -> str:
        """Replace the last commit (history rewritten; push with force)."""
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "--amend", "--allow-empty", "-m", message)
        return self.head()

    def delete_remote_branch(self) -> None:
        git(self.bare, "update-ref", "-d", f"refs/heads/{self.branch}")

    # ---------------------------------------------------------------- reading

    def executables(self, ref: str) -> set[str]:
        """Paths of ``git archive <ref>`` whose mode is 100755."""
        data = git(self.bare, "archive", "--format=tar", ref)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return {m.name for m in tar.getmembers() if m.isfile() and m.mode & stat.S_IXUSR}

    def archive(self, ref: str) -> dict[str, bytes]:
        """Regular files of ``git archive <ref>`` of the remote, by path."""
        data = git(self.bare, "archive", "--format=tar", ref)
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    files[member.name] = extracted.read()
        return files


def snapshot(root: Path) -> dict[str, object]:
    """Every entry below ``root``: files by content, folders, links by target (nothing followed)."""
    found: dict[str, object] = {}
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(folder) / name
            rel = full.relative_to(root).as_posix()
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("folder",)
            else:
                found[rel] = ("file", full.read_bytes())
    return found


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def assert_mirrors(repo: Repo, ref: str, workspace: Path, *, ignore: tuple[str, ...] = ()) -> None:
    """The workspace equals ``git archive <ref>`` byte for byte and holds nothing else.

    Paths equal to or below an ``ignore`` entry (skipped or refused entries) are left out of
    both sides; the folders expected are exactly those holding an expected file.
    """
    expected = {p: data for p, data in repo.archive(ref).items() if not _under(p, ignore)}
    expected_folders = {"/".join(p.split("/")[:d]) for p in expected for d in range(1, p.count("/") + 1)}
    actual = {p: v for p, v in snapshot(workspace).items() if not _under(p, ignore)}
    actual_files = {p: v[1] for p, v in actual.items() if v[0] == "file"}
    actual_folders = {p for p, v in actual.items() if v[0] == "folder"}
    others = sorted(p for p, v in actual.items() if v[0] not in ("file", "folder"))
    assert others == [], f"unexpected links in the workspace: {others}"
    missing = sorted(set(expected) - set(actual_files))
    extra = sorted(set(actual_files) - set(expected))
    differ = sorted(p for p in set(expected) & set(actual_files) if expected[p] != actual_files[p])
    assert (missing, extra, differ) == ([], [], []), f"missing {missing}, extra {extra}, differ {differ}"
    # Modes too: git tracks the exec bit, and a workspace step runs `./deploy.sh`.
    executable = {p for p in actual_files if (workspace / p).stat().st_mode & stat.S_IXUSR}
    wanted = {p for p in repo.executables(ref) if not _under(p, ignore)}
    assert executable == wanted, (
        f"exec bit: set on {sorted(executable - wanted)}, missing on {sorted(wanted - executable)}"
    )
    # Ignored entries may keep their folders (a skipped link's folder holds what was there).
    kept = {f for f in actual_folders - expected_folders if any(_under(i, (f,)) for i in ignore)}
    assert actual_folders - kept == expected_folders, (
        f"folders: extra {sorted(actual_folders - kept - expected_folders)}, missing {sorted(expected_folders - actual_folders)}"
    )


# ---------------------------------------------------------------------------------- HTTP


class GitHttpServer:
    """``git http-backend`` for the repositories under ``root``, on 127.0.0.1, behind Basic auth.

    Only ``Authorization: Basic base64("x-access-token:<token>")`` is let in; anything else
    is 401. While it serves a request it also looks at every process's command line and
    records in ``token_in_argv`` whether the token (or its encoded form) appears there.
    """

    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        self.token = token
        self.expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.requests: list[tuple[str, str, int]] = []
        self.token_in_argv = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._serve(self)

            def do_POST(self) -> None:
                server._serve(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{repo.bare.relative_to(self.root).as_posix()}"

    def _scan_argv(self) -> None:
        needles = [self.token.encode(), self.expected.split(" ")[1].encode()]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if any(n in cmdline for n in needles):
                self.token_in_argv = True

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        self._scan_argv()
        path, _, query = handler.path.partition("?")
        if handler.headers.get("Authorization") != self.expected:
            self.requests.append((handler.command, path, 401))
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="test"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        body = _read_body(handler)
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": handler.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": handler.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": handler.headers.get("Content-Encoding", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60, check=False
        )
        out = done.stdout
        split = out.find(b"\r\n\r\n")
        head, payload = (out[:split], out[split + 4 :]) if split >= 0 else out.split(b"\n\n", 1)
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.requests.append((handler.command, path, status))
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                handler.rfile.readline()
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""
