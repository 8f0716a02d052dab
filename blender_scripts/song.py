"""Read a standard MIDI file (type 0 or 1) into timed notes, a tempo map and bar lines, with mido."""

from __future__ import annotations

import bisect
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import mido

from blender_scripts.errors import ContentError

PERCUSSION_CHANNEL = 9  # MIDI channel 10, zero-based
# Pitched notes outside C1..C8 have no bar a mallet instrument could carry (pitch 0 would be an 8 Hz bar):
# they are moved by whole octaves into this range, and the build says which.
PITCH_MIN, PITCH_MAX = 24, 108
MAX_DENOMINATOR = 64


@dataclass(frozen=True)
class Limits:
    """Bounds a song must keep before any work is sized from it; build's flags override them."""

    max_seconds: float = 900.0  # --max-length: 15 minutes of song (audio and frames grow with it)
    min_bpm: float = 10.0  # --tempo-range MIN-MAX
    max_bpm: float = 1000.0
    # --max-notes: every note is a marble (planned, built, rendered); a busy 15-minute song has ~20,000.
    max_notes: int = 50_000
    # --max-notes-at-once: notes on one pitch within AT_ONCE_S. Each needs a lane of its own, and the planner
    # tries every lane for every one of them: its work grows with the square of this, so it is bounded
    # (unisons across tracks and flams take a few; 5,000 at one tick took 22 s to plan, 100,000 never ended).
    max_at_once: int = 64


AT_ONCE_S = 0.06  # notes on one element closer than this need lanes of their own (layout.CROWD_S)


@dataclass(frozen=True)
class Note:
    index: int
    track: int
    track_name: str
    channel: int
    pitch: int
    velocity: int
    time: float  # seconds from the start of the song
    duration: float
    program: int = 0  # General MIDI program (0-127) on the note's channel when it starts
    volume: float = 1.0  # channel volume x expression (CC7 x CC11, 0..1) when it starts

    @property
    def is_percussion(self) -> bool:
        return self.channel == PERCUSSION_CHANNEL


@dataclass(frozen=True)
class Song:
    name: str
    notes: tuple[Note, ...]
    track_names: tuple[str, ...]
    end_time: float  # last note-off (seconds)
    bar_times: tuple[float, ...]  # bar lines from the tempo map and time signatures, first is 0.0
    tempo_changes: int
    # Pitched notes moved into PITCH_MIN..PITCH_MAX: (note index, pitch in the file, pitch used)
    moved: tuple[tuple[int, int, int], ...] = ()


class _ChannelState:
    """Program and volume per channel over time: a type 1 file may set them in any track."""

    def __init__(self, events: list[tuple[int, int, str, int]]):
        self.ticks: dict[tuple[int, str], list[int]] = defaultdict(list)
        self.values: dict[tuple[int, str], list[int]] = defaultdict(list)
        for tick, channel, kind, value in sorted(events):
            self.ticks[(channel, kind)].append(tick)
            self.values[(channel, kind)].append(value)

    def at(self, channel: int, kind: str, tick: int, default: int) -> int:
        ticks = self.ticks.get((channel, kind))
        i = bisect.bisect_right(ticks, tick) - 1 if ticks else -1
        return self.values[(channel, kind)][i] if i >= 0 else default


class _TempoMap:
    """Ticks -> seconds over every set_tempo event in the file (type 1 keeps them in any track)."""

    def __init__(self, ticks_per_beat: int, changes: list[tuple[int, int]]):
        self.tpb = ticks_per_beat
        self.ticks = [0]
        self.tempos = [500000]
        self.seconds = [0.0]
        for tick, tempo in sorted(changes):
            if tick == self.ticks[-1]:
                self.tempos[-1] = tempo
                continue
            self.seconds.append(self.at(tick))
            self.ticks.append(tick)
            self.tempos.append(tempo)

    def at(self, tick: int) -> float:
        i = bisect.bisect_right(self.ticks, tick) - 1
        return self.seconds[i] + (tick - self.ticks[i]) * self.tempos[i] / (1e6 * self.tpb)


def _open(path: Path) -> mido.MidiFile:
    if not path.is_file():
        raise ContentError(f"MIDI file {path} does not exist; pass --midi PATH to a .mid file")
    if path.stat().st_size == 0:
        raise ContentError(f"MIDI file {path} is empty (0 bytes); export the song again")
    try:
        midi = mido.MidiFile(str(path), clip=True)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise ContentError(
            f"MIDI file {path} is not a valid standard MIDI file ({exc}); export it again"
        ) from exc
    if midi.type == 2:
        raise ContentError(f"MIDI file {path} is type 2 (independent patterns); save it as type 0 or 1")
    if midi.ticks_per_beat <= 0:
        raise ContentError(f"MIDI file {path} uses SMPTE time division, which is not supported; use PPQ")
    return midi


def _fold_pitch(pitch: int) -> int:
    while pitch < PITCH_MIN:
        pitch += 12
    while pitch > PITCH_MAX:
        pitch -= 12
    return pitch


def _check_tempos(path: Path, events: list[tuple[int, int]], limits: Limits) -> None:
    for tick, tempo in events:
        bpm = 60e6 / tempo if tempo > 0 else float("inf")
        if not limits.min_bpm <= bpm <= limits.max_bpm:
            shown = "0 us per beat (infinite speed)" if tempo <= 0 else f"{bpm:.4g} BPM"
            raise ContentError(
                f"MIDI file {path}: set_tempo at tick {tick} is {shown}, outside the tempo range "
                f"{limits.min_bpm:g}-{limits.max_bpm:g} BPM; fix the tempo in the file, or widen the bound "
                "with --tempo-range MIN-MAX"
            )


def _check_signatures(path: Path, signatures: list[tuple[int, int, int]]) -> None:
    for tick, num, den in signatures:
        if num < 1 or not 1 <= den <= MAX_DENOMINATOR:
            raise ContentError(
                f"MIDI file {path}: time signature {num}/{den} at tick {tick} is not a meter (numerator >= 1, "
                f"denominator 1..{MAX_DENOMINATOR}); fix it in the file"
            )


def load(path: str | Path, limits: Limits | None = None) -> Song:
    path = Path(path)
    limits = limits or Limits()
    midi = _open(path)
    tempo_events: list[tuple[int, int]] = []
    signatures: list[tuple[int, int, int]] = []
    raw: list[tuple[int, int, int, int, int, int]] = []  # start, end, track, channel, pitch, velocity
    controls: list[tuple[int, int, str, int]] = []  # tick, channel, program|volume|expression, value
    names: list[str] = []
    for ti, track in enumerate(midi.tracks):
        names.append(track.name.strip() or f"track{ti}")  # files pad names with spaces
        tick = 0
        open_notes: dict[tuple[int, int], deque[tuple[int, int]]] = defaultdict(deque)
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempo_events.append((tick, msg.tempo))
            elif msg.type == "time_signature":
                signatures.append((tick, msg.numerator, msg.denominator))
            elif msg.type == "program_change":
                controls.append((tick, msg.channel, "program", msg.program))
            elif msg.type == "control_change" and msg.control in (7, 11):
                controls.append(
                    (tick, msg.channel, "volume" if msg.control == 7 else "expression", msg.value)
                )
            elif msg.type == "note_on" and msg.velocity > 0:
                open_notes[(msg.channel, msg.note)].append((tick, msg.velocity))
            elif msg.type in ("note_off", "note_on"):
                pending = open_notes.get((msg.channel, msg.note))
                if pending:  # first on, first off: overlapping repeats of one pitch pair up in order
                    start, vel = pending.popleft()
                    raw.append((start, tick, ti, msg.channel, msg.note, vel))
        for (channel, pitch), pending in open_notes.items():  # never closed: ends with its track
            raw.extend((start, tick, ti, channel, pitch, vel) for start, vel in pending)
    if not raw:
        raise ContentError(f"MIDI file {path} has no notes; a song needs at least one note_on")
    _check_tempos(path, tempo_events, limits)
    _check_signatures(path, signatures)
    tempo = _TempoMap(midi.ticks_per_beat, tempo_events)
    end_tick = max(r[1] for r in raw)
    # Before anything is sized from it (audio samples, frames, bar lines): the song's length is bounded.
    if tempo.at(end_tick) > limits.max_seconds:
        last_on = tempo.at(max(r[0] for r in raw))
        raise ContentError(
            f"MIDI file {path} lasts {tempo.at(end_tick):.0f} s (its last note starts at {last_on:.0f} s), "
            f"longer than the {limits.max_seconds:.0f} s bound; trim the silence or the song, or raise the "
            "bound with --max-length SECONDS"
        )
    raw.sort(key=lambda r: (r[0], r[2], r[3], r[4], r[1]))
    state = _ChannelState(controls)
    notes = []
    moved = []
    for i, (start, end, ti, channel, pitch, vel) in enumerate(raw):
        t0 = tempo.at(start)
        used = pitch if channel == PERCUSSION_CHANNEL else _fold_pitch(pitch)
        if used != pitch:
            moved.append((i, pitch, used))
        volume = (
            state.at(channel, "volume", start, 100) * state.at(channel, "expression", start, 127) / 127**2
        )
        notes.append(
            Note(
                i, ti, names[ti], channel, used, vel, t0, max(tempo.at(end) - t0, 0.0),
                program=state.at(channel, "program", start, 0), volume=volume,
            )
        )  # fmt: skip
    _check_counts(path, notes, limits)
    end_tick = max(r[1] for r in raw)
    end_time = max(tempo.at(end_tick), max(n.time for n in notes) + 1e-3)
    tune = Song(
        name=path.stem,
        notes=tuple(notes),
        track_names=tuple(names),
        end_time=end_time,
        bar_times=tuple(_bar_times(midi.ticks_per_beat, signatures, end_tick, tempo, end_time)),
        tempo_changes=len({t for _, t in tempo_events}),
        moved=tuple(moved),
    )
    # Derived lengths are bounded too, not only the song's own: the loop (and its audio, frames and render
    # chunks) is the song rounded up to a whole bar, and one bar of an extreme meter can last hours.
    loop = loop_length(tune)
    if loop > limits.max_seconds:
        bars = [b for b in tune.bar_times if b < end_time] or [0.0]
        raise ContentError(
            f"MIDI file {path}: its loop (the song rounded up to a whole bar) lasts {loop:.0f} s, longer than the "
            f"{limits.max_seconds:.0f} s bound: the bar from {bars[-1]:.1f} s lasts {loop - bars[-1]:.0f} s (its "
            "time signature and tempo); fix the meter in the file, or raise the bound with --max-length SECONDS"
        )
    return tune


def _check_counts(path: Path, notes: list[Note], limits: Limits) -> None:
    """The note count and the most notes on one pitch at once, bounded before any planning is sized."""
    if len(notes) > limits.max_notes:
        raise ContentError(
            f"MIDI file {path} has {len(notes)} notes, more than the {limits.max_notes} bound (each is a marble "
            "to plan, build and render); split the song, or raise the bound with --max-notes N"
        )
    times: dict[int, list[float]] = defaultdict(list)
    for n in notes:  # already in time order
        times[n.pitch].append(n.time)
    worst = (0, 0, 0.0)  # count, pitch, where
    for pitch, ts in sorted(times.items()):
        j = 0
        for i, t in enumerate(ts):
            while ts[j] < t - AT_ONCE_S:
                j += 1
            if i - j + 1 > worst[0]:
                worst = (i - j + 1, pitch, ts[j])
    count, pitch, where = worst
    if count > limits.max_at_once:
        raise ContentError(
            f"MIDI file {path} has {count} notes on pitch {pitch} within {AT_ONCE_S * 1000:.0f} ms (at "
            f"{where:.3f} s), more than the {limits.max_at_once} bound (each needs a lane of its own); thin "
            "them out, or raise the bound with --max-notes-at-once N"
        )


def _bar_times(
    tpb: int, signatures: list[tuple[int, int, int]], end_tick: int, tempo: _TempoMap, end_time: float
) -> list[float]:
    """Bar lines in seconds up to and including the first one at or after the song's end."""
    sigs = sorted({tick: (num, den) for tick, num, den in sorted(signatures)}.items()) or [(0, (4, 4))]
    if sigs[0][0] != 0:
        sigs.insert(0, (0, (4, 4)))
    bars = []
    tick = 0
    si = 0
    while True:
        while si + 1 < len(sigs) and sigs[si + 1][0] <= tick:
            si += 1
        bars.append(tempo.at(tick))
        # Past the last note-off and the last onset (a zero-length final note ends 1 ms after it).
        if tick >= end_tick and len(bars) > 1 and bars[-1] >= end_time - 1e-9:
            return bars
        num, den = sigs[si][1]
        tick += max(1, round(tpb * num * 4 / den))


def loop_length(song: Song) -> float:
    """The song rounded up to a whole bar."""
    for t in song.bar_times[1:]:
        if t >= song.end_time - 1e-9:
            return t
    return song.bar_times[-1]
