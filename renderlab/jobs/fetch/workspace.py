"""The destination side: the asset folder on the share, its have-list, atomic writes and the manifest.

Layout under DEST (renderlab.base.share.ShareLayout.assets(project)):
    DEST/<files>                           the synced project files
    DEST/.renderlab/state.json             have-list: what this tool put there, with digests and stat keys
    DEST/.renderlab/manifest-<change>.json verified file list, published last (ShareLayout.manifest)

A file whose (size, mtime_ns, ctime_ns, inode) still match its have-list entry is known to hold the digest
recorded when it was written and verified (git's index uses the same key); anything else is re-hashed.
`verify="full"` re-hashes every file regardless.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from renderlab.base import atomic
from renderlab.base.share import ShareLayout

from .errors import DestinationError, FetchError, SourceError
from .state import MAX_STATE_BYTES, META, read_state, safe_relpath

STATE = "state.json"
CHUNK = 1 << 20
_TMP = re.compile(r"^\..+\.rlfetch-\d+\.tmp$")
_MANIFEST = re.compile(r"^manifest-(\d+)\.json$")

OnBytes = Callable[[int], None]


def hash_file(path: Path, algorithm: str, on_bytes: OnBytes | None = None) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return h.hexdigest()


def stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.rlfetch-{os.getpid()}.tmp")


def destination_error(exc: OSError, path: Path, doing: str) -> DestinationError:
    """Turn an OSError on the share into one message that names the path and the fix."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "the share is full; free space on it or enlarge it, then re-run (work done so far is kept)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "the fetch user cannot write there; mount the share read-write or fix its owner/permissions"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        hint = "a file stands where a folder is needed; remove it or pick another --dest"
    else:
        hint = "check the share mount"
    return DestinationError(f"cannot {doing} {path}: {exc.strerror or exc} ({hint})")


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temp name beside `path`, fsync, then rename over it (renderlab.base.atomic)."""
    try:
        atomic.write_bytes(path, data, mode=0o644, fsync=True, temp=temp_name(path))
    except OSError as e:
        raise destination_error(e, path, "write") from e


@dataclass
class Entry:
    """One file the fetch wrote and verified: its digest and the stat key it had then."""

    size: int
    digest: str
    stat: list[int] = field(default_factory=list)


@dataclass
class Workspace:
    """The destination folder and its have-list."""

    root: Path
    algorithm: str
    kind: str  # "file" or "p4": a have-list of one kind is never reused for the other
    have: dict[str, Entry] = field(default_factory=dict)
    source_cache: dict[str, list] = field(default_factory=dict)
    _saved_at: float = 0.0
    _saved_bytes: bytes = b""
    _pinned: dict[Path, tuple[int, int]] = field(default_factory=dict)

    @property
    def meta(self) -> Path:
        return self.root / META

    @property
    def project(self) -> str:
        return self.root.name

    def manifest_path(self, change: int) -> Path:
        layout = ShareLayout(PurePosixPath(self.root.parent.parent))
        return Path(layout.manifest(self.project, change))

    @classmethod
    def open(
        cls, root: Path, algorithm: str, kind: str, log: Callable[[str], None] | None = None
    ) -> Workspace:
        """Create DEST/.renderlab if needed, prove it is writable, load the have-list.

        The share root (named by the operator) is resolved once; below it, `assets`, DEST and DEST/.renderlab
        must be real folders, never links (anyone who can write the share could point them anywhere), and
        their device and inode are pinned: `prove()` refuses the run if one is swapped later."""
        root = Path(os.path.abspath(root))
        if root.parent.name != "assets":
            raise DestinationError(
                f"--dest {root} is not a project asset folder; use <share>/assets/<project> "
                "(renderlab.base.share.ShareLayout.assets)"
            )
        try:
            ShareLayout(PurePosixPath(root.parent.parent)).assets(root.name)
        except ValueError as e:
            raise DestinationError(f"--dest {root}: {e}") from e
        share = Path(os.path.realpath(root.parent.parent))
        ws = cls(root=share / "assets" / root.name, algorithm=algorithm, kind=kind)
        for folder in (ws.root.parent, ws.root, ws.meta):
            try:
                folder.mkdir(exist_ok=True)
            except FileNotFoundError as e:
                raise destination_error(e, folder, "create") from e
            except OSError as e:
                if not os.path.islink(folder):
                    raise destination_error(e, folder, "create") from e
            ws._pinned[folder] = _folder_id(folder)
        probe = temp_name(ws.meta / "write-probe")
        try:
            probe.touch()
            probe.unlink()
        except OSError as e:
            raise destination_error(e, ws.meta, "write in") from e
        ws._load(log or (lambda _m: None))
        return ws

    def prove(self) -> None:
        """Refuse the run unless `assets`, DEST and DEST/.renderlab are still the folders pinned at open."""
        for folder, pinned in self._pinned.items():
            if _folder_id(folder) != pinned:
                raise DestinationError(
                    f"{folder} was replaced while the fetch ran; it writes only inside the folder it "
                    "started with: stop whatever changes the share, then re-run"
                )

    @contextlib.contextmanager
    def locked(self, timeout_s: float, log: Callable[[str], None]) -> Iterator[None]:
        """One fetch per project at a time: a second one waits (up to `timeout_s`), then finds it done."""
        path = self.meta / "lock"
        self.prove()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise destination_error(e, path, "create") from e
        try:
            deadline = time.monotonic() + timeout_s
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DestinationError(
                            f"another fetch into {self.root} still holds {path} after {timeout_s:.0f} s; "
                            "wait for it to finish (or end it), then re-run"
                        ) from None
                    if not waited:
                        log(f"another fetch into {self.root} is running; waiting for it")
                        waited = True
                    time.sleep(0.2)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _load(self, log: Callable[[str], None]) -> None:
        """Read the have-list back from the share: untrusted, so schema-checked (renderlab.jobs.fetch.state)."""
        path = self.meta / STATE
        try:
            with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
                self._saved_bytes = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return
        except OSError as e:
            log(f"cannot read {path} ({e.strerror or e}); every file is re-hashed")
            return
        state, why = read_state(self._saved_bytes)
        if state is None:
            # A damaged or forged have-list only costs re-hashing: every file is checked against its digest.
            log(f"ignoring {path}: {why}; every file is re-hashed")
            return
        if state.kind != self.kind or state.algorithm != self.algorithm:
            return
        self.have = {p: Entry(e.size, e.digest, list(e.stat)) for p, e in state.files.items()}
        self.source_cache = {p: list(v) for p, v in state.source_cache.items()}

    def save(self, force: bool = True) -> None:
        """Persist the have-list (atomically); without `force`, at most every 2 s during a transfer."""
        now = time.monotonic()
        if not force and now - self._saved_at < 2.0:
            return
        doc = {
            "kind": self.kind,
            "algorithm": self.algorithm,
            "files": {p: e.__dict__ for p, e in sorted(self.have.items())},
            "source_cache": self.source_cache,
        }
        data = json.dumps(doc, separators=(",", ":")).encode()
        if data != self._saved_bytes:  # an unchanged re-run rewrites nothing
            self.prove()
            write_atomic(self.meta / STATE, data)
            self._saved_bytes = data
        self._saved_at = now

    def path(self, rel: str) -> Path:
        """DEST/rel, refused unless it stays inside DEST: a safe relative path, no symlinked folder on the way."""
        try:
            safe_relpath(rel)
        except ValueError as e:
            raise DestinationError(f"refusing a path outside {self.root}: {e}") from None
        parts = rel.split("/")
        here = self.root
        for part in parts[:-1]:
            here = here / part
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                break
            except OSError as e:
                raise destination_error(e, here, "read") from e
            if stat.S_ISLNK(st.st_mode):
                raise DestinationError(
                    f"{here} is a symlink where the fetch needs a folder; remove it (the fetch never "
                    "follows links out of --dest), then re-run"
                )
        return self.root / rel

    def record(self, rel: str, digest: str) -> None:
        st = self.path(rel).stat()
        self.have[rel] = Entry(size=st.st_size, digest=digest, stat=stat_key(st))

    def quick_check(self, rel: str, digest: str, size: int) -> bool | None:
        """True: verified by its stat key; False: missing or wrong size; None: must be re-hashed."""
        try:
            st = self.path(rel).stat()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise destination_error(e, self.path(rel), "read") from e
        if st.st_size != size:
            return False
        e = self.have.get(rel)
        if e and e.digest == digest and e.stat == stat_key(st):
            return True
        return None

    def check(self, rel: str, digest: str, size: int, full: bool, on_bytes: OnBytes | None = None) -> bool:
        """Does DEST/rel hold `digest`? Re-hashes when the stat key cannot vouch for it (or `full`)."""
        quick = self.quick_check(rel, digest, size)
        if quick is False:
            return False
        if quick is True and not full:
            return True
        try:
            ok = hash_file(self.path(rel), self.algorithm, on_bytes) == digest
        except FileNotFoundError:
            return False
        except OSError as e:
            raise destination_error(e, self.path(rel), "read") from e
        if ok:
            self.record(rel, digest)
        else:
            self.have.pop(rel, None)
        return ok

    def remove(self, rel: str) -> bool:
        """Delete a file this tool put there (and folders it leaves empty); True if a file was removed."""
        self.have.pop(rel, None)
        try:
            path = self.path(rel)
        except DestinationError:
            return False  # never delete through a link or outside DEST; forgetting the entry is enough
        self.prove()
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise destination_error(e, path, "remove") from e
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    def clean_temp_files(self) -> int:
        """Remove temp files a killed run left behind (they never carry a final name)."""
        removed = 0
        self.prove()
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if _TMP.fullmatch(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
        return removed

    def ensure_space(self, needed: int) -> None:
        free = shutil.disk_usage(self.root).free
        if needed > free:
            raise DestinationError(
                f"the share at {self.root} has {free / 1e6:.1f} MB free but this fetch needs "
                f"{needed / 1e6:.1f} MB more; free space on it or enlarge it, then re-run"
            )

    def published(self) -> list[int]:
        out = []
        with contextlib.suppress(FileNotFoundError):
            for p in self.meta.iterdir():
                if m := _MANIFEST.fullmatch(p.name):
                    out.append(int(m.group(1)))
        return sorted(out)

    def publish(self, change: int, source: str, files: Iterable[tuple[str, int, str]]) -> Path:
        """Write manifest-<change>.json atomically, then retire the manifests of other changes."""
        listed = [{"path": p, "size": s, "digest": d} for p, s, d in sorted(files)]
        doc = {
            "changelist": change,
            "source": source,
            "algorithm": self.algorithm,
            "files_total": len(listed),
            "bytes_total": sum(f["size"] for f in listed),
            "files": listed,
        }
        target = self.manifest_path(change)
        data = (json.dumps(doc, indent=1) + "\n").encode()
        self.prove()
        try:
            same = target.read_bytes() == data
        except OSError:
            same = False
        if not same:
            write_atomic(target, data)
        for old in self.published():
            if old != change:
                with contextlib.suppress(FileNotFoundError):
                    self.manifest_path(old).unlink()
        return target


def _folder_id(folder: Path) -> tuple[int, int]:
    """(device, inode) of `folder`, opened without following a link; DestinationError if it is one."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a symbolic link" if os.path.islink(folder) else "not a folder"
            raise DestinationError(
                f"{folder} is {kind}; the fetch writes only inside the real destination, never through a "
                "link: make it a plain folder (or point --dest at the real one), then re-run"
            ) from None
        raise destination_error(e, folder, "open") from e
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_dev, st.st_ino


def relpaths_under(root: Path, skipped: list[str] | None = None) -> Iterable[tuple[str, os.stat_result]]:
    """Every regular file under `root` (not following links), skipping the .renderlab folder.

    Symlinks are never followed (they could point anywhere); their paths are appended to `skipped`.
    A name that is not valid UTF-8 raises SourceError: the share and Perforce need UTF-8 names.
    """
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError as e:
            raise FetchError(f"cannot list {d}: {e.strerror or e}") from e
        for ent in entries:
            try:
                ent.name.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(ent.path).decode("utf-8", "backslashreplace")
                raise SourceError(
                    f"file name {shown} is not valid UTF-8; rename it (the share and Perforce need UTF-8 "
                    "names), then re-run"
                ) from None
            if ent.is_symlink():
                if skipped is not None:
                    skipped.append(Path(ent.path).relative_to(root).as_posix())
                continue
            if ent.is_dir(follow_symlinks=False):
                if not (d == root and ent.name == META):
                    stack.append(Path(ent.path))
            elif ent.is_file(follow_symlinks=False) and not _TMP.fullmatch(ent.name):
                yield Path(ent.path).relative_to(root).as_posix(), ent.stat(follow_symlinks=False)
