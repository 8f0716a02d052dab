"""`make real-midi`: real multi-instrument MIDI files for the showcase's visibility checks, fetched, not committed.

The repository's own songs are composed for it; issue 32's bar is real music: pop with drums, a recorded piano
performance, a string ensemble. Such files come with two packages on the Python package index, as their test
data and corpus: MidiTok's source distribution (ten pop songs with drums as multitrack MIDI, and MAESTRO piano
performances) and music21's wheel (Mozart's K. 525 for strings). Neither package is installed: `pip download`
fetches the one distribution file by its pinned sha256 (`--require-hashes`), and only the named MIDI files
are taken out of it, each checked against its own sha256, into ~/.cache/renderlab/real-midi/ (a second run
downloads nothing). The files are the packages' authors'; they stay in the cache and never enter git.

    python -m renderlab.workstation.real_midi [--dest DIR] [--only NAME ...]   # prints NAME PATH per file
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from renderlab.base import atomic, cli

MAX_MIDI_BYTES = 4 * 1024 * 1024  # the largest member taken out (the files named below are <= 120 KB)


@dataclass(frozen=True)
class Dist:
    requirement: str  # name==version
    sha256: str  # of the distribution file
    sdist: bool  # the source distribution (MidiTok's test data is only in it), else the wheel


@dataclass(frozen=True)
class Song:
    name: str  # the file's name in the cache: <name>.mid
    dist: Dist
    member: str  # its path inside the distribution file
    sha256: str
    what: str


MIDITOK = Dist(
    "miditok==3.1.0", "1f905b9be87a57dac28a86c1c7a7565674a5d2e57b2f650bc2fea97792f6bdef", sdist=True
)
MUSIC21 = Dist(
    "music21==10.5.1", "dc3309498c4c95cebdf8d4f20c868deb6b63bce1d929cad4f51a7ccc982987b1", sdist=False
)
_POP = "miditok-3.1.0/tests/MIDIs_multitrack/"
SONGS = {
    s.name: s
    for s in (
        Song(
            "pop_blue_sky",
            MIDITOK,
            _POP + "Mr. Blue Sky.mid",
            "74316188b46ab648a69fe70418c1f01510d4911f2963e159c4cb92641230c7e5",
            "pop with drums, nine programs, 225 s, 4,308 notes",
        ),
        Song(
            "pop_girls_just_want",
            MIDITOK,
            _POP + "Girls Just Want to Have Fun.mid",
            "ac90c0ad4dbe34c8e8c8698aae880d4f10e3e6bf5fa650ffcc47443ba9143b02",
            "pop with drums, ten programs, 171 s, 5,362 notes",
        ),
        Song(
            "pop_in_too_deep",
            MIDITOK,
            _POP + "In Too Deep.mid",
            "10fd666e28dec8f4b11ca1f4139e68edbb80dfc701c729aca99fd875e95bf09f",
            "pop with drums, twelve programs, 306 s, 5,474 notes",
        ),
        Song(
            "piano_maestro_3",
            MIDITOK,
            "miditok-3.1.0/tests/MIDIs_one_track/Maestro_3.mid",
            "cab488a8c7dec96882031342bd80b6c5dad6a930b5495b141622a86be6c552f1",
            "a recorded piano performance (MAESTRO), 222 s, 3,142 notes",
        ),
        Song(
            "strings_k525",
            MUSIC21,
            "music21/omr/k525MIDIMvt1.mid",
            "166c1332be57619783f9d3ee023028064cf8335ec9fb9c2bfde173b0d033cff5",
            "Mozart, K. 525 i: strings in five parts (a quartet and a bass), 326 s, 6,398 notes",
        ),
    )
}


class FetchError(cli.CommandError):
    pass


class DownloadError(FetchError):
    """pip could not download a package (no network, no index): the files were never checked."""


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "renderlab" / "real-midi"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(dist: Dist, into: Path) -> Path:
    """The distribution file, by pip (the index the user's pip is configured for), hash-checked by pip."""
    req = into / "requirement.txt"
    req.write_text(f"{dist.requirement} --hash=sha256:{dist.sha256}\n")
    kind = ["--no-binary", ":all:"] if dist.sdist else ["--only-binary", ":all:"]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--require-hashes",
        "--disable-pip-version-check",
    ]
    out = subprocess.run(
        [*cmd, *kind, "-q", "-d", str(into), "-r", str(req)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise DownloadError(
            f"pip download {dist.requirement} failed ({cli.one_line(out.stderr.strip()[-400:])}); "
            "check the network and pip's index settings"
        )
    files = [p for p in into.iterdir() if p.name != req.name]
    if len(files) != 1:
        raise FetchError(
            f"pip download {dist.requirement} left {len(files)} files, expected its one distribution"
        )
    return files[0]


def _member(archive: Path, dist: Dist, name: str) -> bytes:
    """One member's bytes, bounded, read from the archive without extracting anything else."""
    try:
        return _read_member(archive, dist, name)
    except KeyError:
        raise FetchError(
            f"{archive.name} ({dist.requirement}) has no {name}; the pinned version should"
        ) from None


def _read_member(archive: Path, dist: Dist, name: str) -> bytes:
    if dist.sdist:
        with tarfile.open(archive, "r:gz") as tar:
            info = tar.getmember(name)
            if not info.isfile() or info.size > MAX_MIDI_BYTES:
                raise FetchError(
                    f"{archive.name}: {name} is not a regular file of at most {MAX_MIDI_BYTES} bytes"
                )
            f = tar.extractfile(info)
            assert f is not None  # a regular member always has one
            return f.read()
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo(name)
        if info.file_size > MAX_MIDI_BYTES:
            raise FetchError(f"{archive.name}: {name} is larger than {MAX_MIDI_BYTES} bytes")
        with z.open(info) as f:
            return f.read(MAX_MIDI_BYTES + 1)


def fetch(names: list[str] | None = None, dest: Path | None = None) -> dict[str, Path]:
    """name -> path of each song, fetched unless the cache already holds it with the right hash."""
    dest = dest or cache_dir()
    if dest.exists() and (dest.is_symlink() or not dest.is_dir()):
        raise FetchError(f"{dest}: not a folder; give --dest a folder (it is created if missing)")
    wanted = [SONGS[n] for n in (names or sorted(SONGS))]
    out: dict[str, Path] = {}
    missing = []
    for song in wanted:
        path = dest / f"{song.name}.mid"
        if (
            path.is_file()
            and not path.is_symlink()
            and path.stat().st_size <= MAX_MIDI_BYTES
            and _sha256(path.read_bytes()) == song.sha256
        ):
            out[song.name] = path
        else:
            missing.append(song)
    by_dist: dict[Dist, list[Song]] = {}
    for song in missing:
        by_dist.setdefault(song.dist, []).append(song)
    for dist, songs in by_dist.items():
        cli.progress(f"real-midi: downloading {dist.requirement} for {', '.join(s.name for s in songs)}")
        with tempfile.TemporaryDirectory(prefix="real-midi-") as tmp:
            archive = _download(dist, Path(tmp))
            for song in songs:
                data = _member(archive, dist, song.member)
                if _sha256(data) != song.sha256:
                    raise FetchError(
                        f"{dist.requirement}: {song.member} has sha256 {_sha256(data)}, expected {song.sha256}"
                    )
                out[song.name] = atomic.write_bytes(dest / f"{song.name}.mid", data, mode=0o644)
    return {name: out[name] for name in sorted(out)}


def _parser() -> cli.Parser:
    p = cli.Parser(prog="real_midi", description="fetch the real MIDI files of the visibility checks")
    p.add_argument("--dest", type=Path, help=f"folder (default {cache_dir()})")
    p.add_argument("--only", action="append", choices=sorted(SONGS), help="only this song (repeatable)")
    return p


@cli.command("real_midi")
def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    for name, path in fetch(ns.only, ns.dest).items():
        print(f"{name} {path}  ({SONGS[name].what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
