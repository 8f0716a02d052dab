"""Property-based fuzzing of the three readers that take untrusted bytes (issue 14): the MIDI parser, the
lab-config loader and the fetch's share-state reader. Each either returns a sound value or raises its one
documented error -- never anything else, and never slowly."""

from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path

import mido
from hypothesis import example, given
from hypothesis import strategies as st

from blender_scripts import song
from blender_scripts.errors import ContentError
from renderlab.jobs.fetch.state import read_state, safe_relpath
from renderlab.lab.config import ConfigError, load

SLOW_S = 30.0  # any one input: a hang detector, generous for a busy shared machine


def _with_file(data: bytes, suffix: str, fn):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        t0 = time.monotonic()
        try:
            return fn(path)
        finally:
            assert time.monotonic() - t0 < SLOW_S, f"{fn.__name__} took over {SLOW_S} s"


# --- MIDI ------------------------------------------------------------------------------------------------

HEADER = b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0"


def _midi_load(data: bytes):
    def parse(path: Path):
        try:
            tune = song.load(path)
        except ContentError:
            return None
        assert 0 < tune.end_time <= song.Limits().max_seconds
        assert all(song.PITCH_MIN <= n.pitch <= song.PITCH_MAX for n in tune.notes if not n.is_percussion)
        assert tune.bar_times[0] == 0.0 and tune.bar_times[-1] >= tune.end_time - 1e-6
        return tune

    return _with_file(data, ".mid", parse)


@given(st.binary(max_size=400))
@example(b"")
@example(HEADER)
@example(HEADER + b"MTrk\x00\x00\x00\x04\x00\x90\x3c")  # a track that ends inside a message
def test_midi_parser_on_arbitrary_bytes(data: bytes):
    _midi_load(data)


@given(st.binary(max_size=300))
def test_midi_parser_on_bytes_behind_a_valid_header(body: bytes):
    _midi_load(HEADER + b"MTrk" + len(body).to_bytes(4, "big") + body)


EVENT = st.one_of(
    st.tuples(st.just("note"), st.integers(0, 15), st.integers(0, 127), st.integers(0, 127)),
    st.tuples(st.just("tempo"), st.integers(0, 0xFFFFFF)),
    st.tuples(st.just("meter"), st.integers(0, 255), st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128, 2**20])),
)


@given(
    st.lists(st.tuples(st.integers(0, 0x0FFFFFFF) | st.integers(0, 2000), EVENT), max_size=40),
    st.integers(1, 0x7FFF),
)
@example([(0, ("tempo", 0)), (0, ("note", 0, 60, 90)), (480, ("note", 0, 60, 0))], 480)  # set_tempo 0
@example([(0, ("note", 0, 60, 90)), (0x0FFFFFFF, ("note", 0, 62, 90))], 480)  # 30-minute-plus silence
@example([(0, ("meter", 0, 4)), (0, ("note", 0, 60, 90)), (48000, ("note", 0, 60, 0))], 1)  # meter 0/4
@example([(0, ("note", 0, 0, 90)), (10, ("note", 0, 127, 90))], 480)  # pitches 0 and 127
@example([(3, ("tempo", 60000)), (1, ("note", 0, 0, 1))], 1)  # found: the last bar ended before the song
def test_midi_parser_on_well_formed_files_with_hostile_values(events, tpb):
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    track = mido.MidiTrack()
    for delta, ev in events:
        if ev[0] == "note":
            track.append(mido.Message("note_on", channel=ev[1], note=ev[2], velocity=ev[3], time=delta))
        elif ev[0] == "tempo":
            track.append(mido.MetaMessage("set_tempo", tempo=ev[1], time=delta))
        else:
            track.append(mido.MetaMessage("time_signature", numerator=ev[1], denominator=ev[2], time=delta))
    mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    _midi_load(buf.getvalue())


# --- the lab config ----------------------------------------------------------------------------------------

SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
DOC = st.recursive(
    SCALAR,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=30,
)
KEYS = st.sampled_from(["renderlab:proxmox", "renderlab:network", "renderlab:hosts", "renderlab:pipeline",
                        "renderlab:proxmox_api_token", "renderlab:versions", "other:x", "renderlab:"])  # fmt: skip
TOKENS = st.sampled_from(["config:", "\n", "  ", "renderlab:x:", "&a", "*a", "[", "]", "{", "}", "? ", ": ",
                          "- ", "!!binary", "!!set", "'", '"', "#", "---", "...", "|", ">", "\t", "\xff", "é"])  # fmt: skip


def _config_load(data: bytes):
    def parse(path: Path):
        try:
            return load(path)
        except ConfigError as e:
            assert str(e).strip()
            return None

    return _with_file(data, ".yaml", parse)


@given(st.binary(max_size=300))
@example(b"config:\n  renderlab:pipeline: &loop\n    inner: *loop\n")  # recursive alias
@example(b"config:\n  ? [a, b]\n  : 1\n")  # a list as a key
@example(b"config: " + b"[" * 3000 + b"]" * 3000)  # deep nesting
@example(b"config:\n  renderlab:x: \xff\xfe\n")  # not UTF-8
def test_config_loader_on_arbitrary_bytes(data: bytes):
    _config_load(data)


@given(st.lists(TOKENS, max_size=60))
def test_config_loader_on_yaml_shaped_noise(tokens):
    _config_load("".join(tokens).encode("utf-8", "surrogatepass"))


@given(st.dictionaries(KEYS, DOC, max_size=6))
def test_config_loader_on_documents_of_any_shape(section):
    import yaml

    _config_load(yaml.safe_dump({"config": section}, allow_unicode=True).encode())


# --- the fetch's share state -------------------------------------------------------------------------------

PATHS = st.one_of(
    st.text(max_size=30),
    st.lists(
        st.sampled_from(["..", ".", "", "a", "b.wav", ".renderlab", "/", "\\", "\x00", "\udcff"]), max_size=6
    ).map("/".join),  # fmt: skip
)
ENTRY = st.fixed_dictionaries(
    {
        "size": st.integers(-5, 2**70) | st.text(max_size=3),
        "digest": st.text("0123456789abcdefX", max_size=70),
    },
    optional={"stat": st.lists(st.integers(), max_size=6), "extra": st.integers()},
)
STATE = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["file", "p4", "x"]),
        "algorithm": st.sampled_from(["sha256", "md5", "crc"]),
        "files": st.dictionaries(PATHS, ENTRY | DOC, max_size=5),
    },
    optional={
        "source_cache": st.dictionaries(PATHS, st.lists(st.integers() | st.text(max_size=4), max_size=6))
    },
)


def _check_state(data: bytes) -> None:
    state, why = read_state(data)
    if state is None:
        assert why
        return
    for rel in [*state.files, *state.source_cache]:
        assert safe_relpath(rel) == rel
        assert not rel.startswith("/") and ".." not in rel.split("/")


@given(st.binary(max_size=400))
@example(b'{"kind": "file", "algorithm": "sha256", "files": {"../../victim": {"size": 1, "digest": "00"}}}')
@example(b"[" * 100000)
def test_share_state_reader_on_arbitrary_bytes(data: bytes):
    _check_state(data)


@given(STATE)
@example({"kind": "file", "algorithm": "sha256", "files": {"/abs/victim": {"size": 7, "digest": "0" * 64}}})
def test_share_state_reader_never_lets_a_path_out(doc):
    _check_state(json.dumps(doc).encode())
