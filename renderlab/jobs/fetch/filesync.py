"""`file://` sources: mirror a plain folder with Perforce's semantics (have-list, deletions, verification).

The "changelist" of a folder is its content version: the first 48 bits of the SHA-256 over the sorted
lines `path NUL size NUL sha256` of its files, as a decimal integer. The same content always gives the
same number, any change to a path, size or byte gives another one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import DestinationError, FetchError, SourceError, UsageError, VerificationError
from .progress import Reporter
from .result import FetchResult
from .source import FileSource
from .workspace import CHUNK, Workspace, destination_error, hash_file, relpaths_under, stat_key, temp_name

ALGORITHM = "sha256"
MAX_LISTED = 100  # skipped symlinks named in the result line (all are counted)


@dataclass(frozen=True)
class SourceFile:
    rel: str
    size: int
    digest: str
    mode: int = 0o644  # permission bits of the source file: kept on the copy, never widened


def file_mode(st: os.stat_result) -> int:
    """The permission bits a copy gets: the source's own, without setuid/setgid/sticky."""
    return stat.S_IMODE(st.st_mode) & 0o777


def content_version(files: list[SourceFile]) -> int:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.rel):
        h.update(f"{f.rel}\0{f.size}\0{f.digest}\n".encode())
    return int(h.hexdigest()[:12], 16) or 1


def scan_source(
    src: FileSource, ws: Workspace, reporter: Reporter, skipped: list[str] | None = None
) -> list[SourceFile]:
    """List the source folder's files with their SHA-256, re-hashing only files whose stat key changed.

    Symlinks are not followed; their paths go to `skipped` (the result reports them)."""
    if not src.root.is_dir():
        raise SourceError(f"source folder {src.root} does not exist or is not a folder; check --source")
    links: list[str] = [] if skipped is None else skipped
    listed = sorted(relpaths_under(src.root, links))
    links.sort()
    if not listed:
        raise SourceError(f"source folder {src.root} holds no files; nothing to fetch")
    cache = ws.source_cache
    stale = [(rel, st) for rel, st in listed if cache.get(rel, [None])[:-1] != stat_key(st)]
    reporter.start("hashing source", sum(st.st_size for _, st in stale))
    for rel, st in stale:
        try:
            digest = hash_file(src.root / rel, ALGORITHM, reporter.advance)
        except OSError as e:
            raise SourceError(f"cannot read source file {src.root / rel}: {e.strerror or e}") from e
        cache[rel] = [*stat_key(st), digest]
    reporter.finish()
    present = {rel for rel, _ in listed}
    for rel in list(cache):
        if rel not in present:
            del cache[rel]
    return [SourceFile(rel, st.st_size, cache[rel][-1], file_mode(st)) for rel, st in listed]


def copy_file(src: Path, ws: Workspace, f: SourceFile, reporter: Reporter) -> None:
    """Copy through a temp name beside the target, hashing on the way; rename only if the digest matches."""
    target = ws.path(f.rel)
    tmp = temp_name(target)
    ws.prove()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.new(ALGORITHM)
        # Created private, then given the source's own bits: the umask can neither widen nor narrow them.
        # O_EXCL | O_NOFOLLOW: a link planted under the temp name is never written through.
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        # O_NOFOLLOW: a file swapped for a symlink after the scan is refused, never followed.
        src_fd = os.open(src / f.rel, os.O_RDONLY | os.O_NOFOLLOW)
        with open(src_fd, "rb") as fin, open(fd, "wb") as fout:
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                fout.write(chunk)
                reporter.advance(len(chunk))
            os.fchmod(fout.fileno(), f.mode)
        if h.hexdigest() != f.digest:
            raise SourceError(
                f"source file {src / f.rel} changed while it was being fetched; re-run the fetch "
                "once the folder is no longer being written"
            )
        ws.prove()
        os.replace(tmp, target)
    except FetchError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if e.filename and str(e.filename).startswith(str(src)):
            raise SourceError(f"cannot read source file {e.filename}: {e.strerror or e}") from e
        raise destination_error(e, target, "write") from e
    ws.record(f.rel, f.digest)


def sync_mode(ws: Workspace, f: SourceFile) -> None:
    """Give an unchanged copy its source's current permission bits (a chmod needs no re-transfer)."""
    target = ws.path(f.rel)
    try:
        st = os.lstat(target)
        if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != f.mode:
            os.chmod(target, f.mode)
            ws.record(f.rel, f.digest)
    except OSError as e:
        raise destination_error(e, target, "set the mode of") from e


def _ids_up(path: Path) -> set[tuple[int, int]]:
    """(device, inode) of `path` and of every existing folder above it, links resolved."""
    ids = set()
    for p in (path, *path.parents):
        with contextlib.suppress(OSError):
            st = os.stat(p)
            ids.add((st.st_dev, st.st_ino))
    return ids


def refuse_overlap(source: Path, dest: Path) -> None:
    """UsageError if one folder is the other or inside it, by their real identity (device and inode), so a
    link or a bind mount that leads one into the other is caught: the fetch would copy DEST into itself."""
    a, b = Path(os.path.realpath(source)), Path(os.path.realpath(dest))
    overlap = a == b or a in b.parents or b in a.parents
    with contextlib.suppress(OSError):
        st = os.stat(a)
        overlap = overlap or (st.st_dev, st.st_ino) in _ids_up(b)
    with contextlib.suppress(OSError):
        st = os.stat(b)
        overlap = overlap or (st.st_dev, st.st_ino) in _ids_up(a)
    if overlap:
        shown = f"--source {source} and --dest {dest}"
        if (a, b) != (source.absolute(), dest.absolute()):
            shown += f" (really {a} and {b})"
        raise UsageError(f"{shown} overlap; fetch into a folder outside the source")


def fetch_folder(
    src: FileSource,
    dest: Path,
    reporter: Reporter,
    *,
    verify_full: bool = False,
    after_each_file: Callable[[str], None] | None = None,
    lock_timeout_s: float = 3600.0,
) -> FetchResult:
    """Bring `dest` to the content of `src`; publish the manifest only after every file is verified."""
    t0 = time.monotonic()
    refuse_overlap(src.root, dest)
    ws = Workspace.open(dest, ALGORITHM, kind="file", log=reporter.log)
    with ws.locked(lock_timeout_s, reporter.log):
        return _fetch_locked(src, ws, reporter, t0, verify_full=verify_full, after_each_file=after_each_file)


def _fetch_locked(
    src: FileSource,
    ws: Workspace,
    reporter: Reporter,
    t0: float,
    *,
    verify_full: bool,
    after_each_file: Callable[[str], None] | None,
) -> FetchResult:
    dest = ws.root
    ws.clean_temp_files()
    skipped: list[str] = []
    files = scan_source(src, ws, reporter, skipped)
    if skipped:
        reporter.log(
            f"{len(skipped)} symlink(s) not followed and not fetched (first: {skipped[0]}); "
            "the result lists them as skipped_symlinks"
        )
    version = content_version(files)
    if src.change is not None and src.change != version:
        raise SourceError(
            f"source folder {src.root} is at content version {version}, not {src.change}; "
            f"it has changed since, fetch @latest or @{version}"
        )

    reporter.start("checking destination", sum(f.size for f in files) if verify_full else 0)
    todo = [f for f in files if not ws.check(f.rel, f.digest, f.size, verify_full, reporter.advance)]
    reporter.finish()

    wanted = {f.rel for f in files}
    removed = sum(ws.remove(rel) for rel in sorted(set(ws.have) - wanted))

    transferred: list[SourceFile] = []

    def transfer(batch: list[SourceFile], phase: str) -> None:
        ws.ensure_space(sum(f.size for f in batch))
        reporter.start(phase, sum(f.size for f in batch))
        for f in batch:
            copy_file(src.root, ws, f, reporter)
            transferred.append(f)
            ws.save(force=False)
            if after_each_file:
                after_each_file(f.rel)
        reporter.finish()

    try:
        if todo:
            reporter.log(
                f"{len(todo)} of {len(files)} files to transfer ({sum(f.size for f in todo) / 1e6:.1f} MB)"
            )
            transfer(todo, "transferring")
        # Verify: re-read what was just written; the rest was checked above and is vouched for by its stat key.
        written = {f.rel for f in transferred}
        reporter.start("verifying", sum(f.size for f in transferred))
        damaged = [
            f for f in files if not ws.check(f.rel, f.digest, f.size, f.rel in written, reporter.advance)
        ]
        reporter.finish()
        if damaged:
            reporter.log(f"{len(damaged)} file(s) failed verification; transferring them again")
            transfer(damaged, "repairing")
            still = [f.rel for f in damaged if not ws.check(f.rel, f.digest, f.size, True)]
            if still:
                raise VerificationError(
                    f"{len(still)} file(s) under {dest} still differ from the source after a re-transfer "
                    f"(first: {still[0]}); check the share's health, then re-run"
                )
        for f in files:
            sync_mode(ws, f)
    finally:
        reporter.finish()
        with contextlib.suppress(DestinationError):
            ws.save()

    ws.publish(version, f"file://{src.root}", ((f.rel, f.size, f.digest) for f in files))
    return FetchResult(
        changelist=version,
        files_total=len(files),
        files_transferred=len(transferred),
        bytes_transferred=sum(f.size for f in transferred),
        files_removed=removed,
        seconds=time.monotonic() - t0,
        skipped_symlinks=skipped[:MAX_LISTED],
        skipped_symlinks_total=len(skipped),
    )
