"""Property-based fuzzing of the readers that take untrusted bytes: the MIDI parser, the
lab-config loader and the fetch's share-state reader, and the gallery's share records (run.json,
validation.json, report.json) and the planner on dense songs. Each either returns a sound value or raises its one
documented error -- never anything else, and never slowly."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import time
from pathlib import Path

import mido
from hypothesis import example, given, settings
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


# --- the gallery's share records: run.json, validation.json, report.json ----------------------

NUMBERS = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70)
VALIDATION = st.fixed_dictionaries(
    {},
    optional={
        "ok": st.booleans() | SCALAR,
        "problems": st.lists(SCALAR, max_size=3) | DOC,
        "variants": st.dictionaries(st.sampled_from(["main", "loop", "<b>"]), st.fixed_dictionaries(
            {}, optional={"video": st.fixed_dictionaries({}, optional={"video_duration_s": NUMBERS})}) | DOC,
            max_size=3),
        "timing": st.fixed_dictionaries({}, optional={"threshold_ms": NUMBERS}) | DOC,
    },
)  # fmt: skip
REPORT = st.fixed_dictionaries(
    {},
    optional={
        "max_timing_error_s": NUMBERS | SCALAR,
        "notes": st.lists(st.fixed_dictionaries({}, optional={"time": NUMBERS, "error": NUMBERS,
                                                              "element": SCALAR, "track_name": SCALAR}) | DOC,
                          max_size=6) | DOC,
    },
)  # fmt: skip
PUBLISHED = st.fixed_dictionaries(
    {},
    optional={
        "run_id": st.sampled_from(["r-1", "..", "r 1", ""]) | SCALAR,
        "started": SCALAR | DOC,
        "ok": SCALAR,
        "variants": st.dictionaries(st.text(max_size=5), st.fixed_dictionaries(
            {}, optional={"contact_sheet": st.sampled_from(["media/a.png", "../x", "/etc/passwd"]) | SCALAR,
                          "duration_s": NUMBERS}) | DOC, max_size=2) | DOC,
    },
)  # fmt: skip


def _encode(doc) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


def _gallery_from(validation: bytes, report: bytes, published: bytes) -> None:
    """The gallery reads the three records from a run and a gallery folder: a page is always made, and the
    index lists only records of the right shape."""
    from renderlab.jobs import gallery, gallery_pages
    from renderlab.jobs import gallery_records as records

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "runs" / "r-1"
        (run / "report").mkdir(parents=True)
        (run / "scene").mkdir()
        (run / "report" / "validation.json").write_bytes(validation)
        (run / "scene" / "report.json").write_bytes(report)
        other = Path(tmp) / "gallery" / "runs" / "r-1"
        other.mkdir(parents=True)
        (other / "index.html").write_text("x")
        (other / "run.json").write_bytes(published)
        t0 = time.monotonic()
        data = gallery.collect(run, records.Meta(run_id="r-1", song="s"))
        page = gallery_pages.run_page(data, {})
        listed = gallery.index_records(Path(tmp) / "gallery")
        gallery_pages.index_page(listed)
        assert time.monotonic() - t0 < SLOW_S
        assert "<script" not in page.lower()
        assert all(r["run_id"] == "r-1" for r in listed)
        for n in data["timing"]["notes"]:
            assert math.isfinite(n["time"]) and math.isfinite(n["error"])


@given(st.binary(max_size=300), st.binary(max_size=300), st.binary(max_size=300))
@example(b"[" * 100000, b'{"notes": {"a": 1}}', b'{"run_id": 7}')
def test_gallery_records_on_arbitrary_bytes(validation: bytes, report: bytes, published: bytes):
    _gallery_from(validation, report, published)


@given(VALIDATION, REPORT, PUBLISHED)
@example(
    {"variants": [1]}, {"notes": [{"time": float("nan"), "error": 1}]}, {"run_id": "r-1", "variants": []}
)
def test_gallery_records_of_any_shape(validation, report, published):
    _gallery_from(_encode(validation), _encode(report), _encode(published))


# --- the planner: any small song plans or is refused, within the hang bound -------------------

CHORD = st.tuples(st.integers(0, 64), st.integers(21, 108), st.integers(1, 12), st.integers(1, 8))


@settings(max_examples=int(os.environ.get("FUZZ_PLANNER_EXAMPLES", "25")))
@given(st.lists(CHORD, min_size=1, max_size=12), st.sampled_from([24, 60]))
@example([(0, 60, 12, 1)] * 6, 60)  # 72 notes on one pitch at one tick: past --max-notes-at-once
def test_planner_on_dense_songs_is_time_bounded(chords, fps):
    """Chords of up to 12 notes on one pitch, up to 12 of them within 16 beats: planned, or refused with
    the one documented error, never slowly."""
    from blender_scripts import arrangement, planner
    from tests.blender.helpers import write_midi

    notes = [(beat / 4, pitch, length / 4) for beat, pitch, count, length in chords for _ in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_midi(Path(tmp) / "dense.mid", [notes])
        t0 = time.monotonic()
        try:
            tune = song.load(path)
            layout, plan = planner.place(tune, arrangement.load(None), fps, song.loop_length(tune))
        except ContentError:
            return
        finally:
            assert time.monotonic() - t0 < SLOW_S, f"planning {len(notes)} notes took over {SLOW_S} s"
        assert len(plan.marbles) <= len(tune.notes)
        assert sum(len(m.hits) for m in plan.marbles) == len(tune.notes)
