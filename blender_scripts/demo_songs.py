"""The project's own demo songs, composed here with mido (public-domain melodies, our arrangements).

    python -m blender_scripts.demo_songs [--depot depot]   # (re)writes depot/songs/<project>/song.mid

ode_waltz: Beethoven's "Ode to Joy" tune over bass and chords (type 1, three tracks, chords, overlaps).
frere_groove: "Frere Jacques" with a drum kit on channel 10 and two tempo changes (120 -> 150 -> 100 bpm).
dense_pop (not in the depot; `--dense FILE` writes it): a generated pop arrangement, six instruments and a
kit over 16 bars, the kind of song whose strikes spread over a wide machine (the visibility gate's case).
"""

from __future__ import annotations

import sys
from pathlib import Path

import mido

from blender_scripts.errors import OutputError
from renderlab.base import atomic, cli

TPB = 480
C4 = 60

ODE = "E E F G G F E D C C D E E. D_ D- E E F G G F E D C C D E D. C_ C-"
ODE_BASS = [48, 43, 48, 43, 48, 43, 48, 48]
ODE_CHORDS = [(64, 67), (62, 67), (64, 67), (62, 65), (64, 67), (62, 67), (64, 67), (60, 64)]
FRERE = "C D E C C D E C E F G- E F G- G_ A_ G_ F_ E C G_ A_ G_ F_ E C C G3 C- C G3 C-"
STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def _melody(spec: str) -> list[tuple[int, float]]:
    """'E' = quarter, 'E.' dotted quarter, 'E_' eighth, 'E-' half; digit = octave (default 4)."""
    out = []
    for tok in spec.split():
        beats = {".": 1.5, "_": 0.5, "-": 2.0}.get(tok[-1], 1.0)
        body = tok.rstrip(".-_")
        octave = int(body[1:]) if len(body) > 1 else 4
        out.append((C4 + 12 * (octave - 4) + STEPS[body[0]], beats))
    return out


def _track(name: str, events: list[tuple[float, str, int, int, int]]) -> mido.MidiTrack:
    """events: (beat, kind, channel, note, velocity) -> a track with delta times, stable order."""
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
    now = 0
    for beat, kind, ch, note, vel in sorted(events, key=lambda e: (e[0], e[1] != "note_off", e[3])):
        tick = round(beat * TPB)
        track.append(mido.Message(kind, channel=ch, note=note, velocity=vel, time=tick - now))
        now = tick
    return track


def _notes(ch: int, items: list[tuple[float, int, float, int]]) -> list[tuple[float, str, int, int, int]]:
    ev = []
    for start, note, length, vel in items:
        ev += [(start, "note_on", ch, note, vel), (start + length, "note_off", ch, note, 0)]
    return ev


def ode_waltz() -> mido.MidiFile:
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="conductor", time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(96), time=0),
        ]
    )
    beat = 0.0
    lead = []
    for note, beats in _melody(ODE):
        lead.append((beat, note + 12, beats * (1.1 if beat + beats < 32 else 1.0), 100))  # legato overlaps
        beat += beats
    bass = [
        (bar * 4.0 + half * 2, ODE_BASS[bar] - (7 if half else 0), 1.9, 80)
        for bar in range(8)
        for half in (0, 1)
    ]
    chords = [(bar * 4.0 + b, n, 0.9, 60) for bar in range(8) for b in (1, 3) for n in ODE_CHORDS[bar]]
    mid.tracks += [
        conductor,
        _track("melody", _notes(0, lead)),
        _track("bass", _notes(1, bass)),
        _track("chords", _notes(2, chords)),
    ]
    return mid


def frere_groove() -> mido.MidiFile:
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    bars = 11
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="conductor", time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120), time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(150), time=4 * 4 * TPB),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100), time=4 * 4 * TPB),
        ]
    )
    tune = _melody(FRERE)
    tune += tune[:11]  # bars 9-11 repeat the opening
    beat = 0.0
    lead = []
    for note, beats in tune:
        lead.append((beat, note + 12, beats * 0.9, 96))
        beat += beats
    drums = []
    for bar in range(bars):
        for eighth in range(8):
            b = bar * 4 + eighth / 2
            drums.append((b, 42 if eighth % 4 != 3 else 46, 0.2, 70))  # hi-hat, open on the "and"
            if eighth in (0, 5):
                drums.append((b, 36, 0.2, 110))  # kick
            if eighth in (2, 6):
                drums.append((b, 38, 0.2, 100))  # snare
        if bar in (3, 7, 10):
            drums.append((bar * 4.0, 49, 1.0, 110))  # crash on the section change
    mid.tracks += [conductor, _track("lead", _notes(0, lead)), _track("kit", _notes(9, drums))]
    return mid


POP_ROOTS = (57, 53, 48, 55)  # A minor, F, C, G: one chord per bar
POP_LEAD = (76, 74, 72, 74, 76, 79, 77, 76, 74, 72, 71, 72, 74, 76, 74, 72)


def dense_pop(bars: int = 16) -> mido.MidiFile:
    """Drums on channel 10, bass, piano chords, a lead, a glockenspiel arpeggio and a string pad (General
    MIDI programs, so the default arrangement spreads them over every family), 112 BPM."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="conductor", time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(112), time=0),
        ]
    )
    parts: dict[str, tuple[int, int, list]] = {  # name: (channel, program, notes)
        "bass": (1, 33, []),
        "piano": (2, 0, []),
        "lead": (3, 73, []),
        "glock": (4, 9, []),
        "pad": (5, 48, []),
        "drums": (9, 0, []),
    }
    for bar in range(bars):
        root = POP_ROOTS[bar % 4]
        triad = (root, root + (3 if root == 57 else 4), root + 7)
        b0 = bar * 4.0
        for k in range(8):  # eighth-note bass, octave jumps on the off-beats
            parts["bass"][2].append((b0 + k / 2, root - 12 - 12 * (k % 2 == 0) + 12, 0.4, 90))
        for b in (0, 1.5, 2.5, 3):  # syncopated piano stabs
            parts["piano"][2].extend((b0 + b, n + 12, 0.4, 70) for n in triad)
        for k in range(4):  # the lead: a quarter-note line, an eighth pickup every other bar
            parts["lead"][2].append((b0 + k, POP_LEAD[(bar * 4 + k) % 16], 0.9, 100))
        if bar % 2:
            parts["lead"][2].append((b0 + 3.5, POP_LEAD[(bar * 4 + 5) % 16] + 2, 0.4, 90))
        for k in range(8):  # glockenspiel arpeggio up two octaves
            parts["glock"][2].append((b0 + k / 2, triad[k % 3] + 24 + 12 * (k // 3 % 2), 0.4, 60))
        parts["pad"][2].extend((b0, n, 3.9, 50) for n in triad)
        drums = parts["drums"][2]
        for k in range(8):
            drums.append((b0 + k / 2, 42 if k != 7 else 46, 0.2, 70))
        drums += [
            (b0, 36, 0.2, 110),
            (b0 + 2.5, 36, 0.2, 100),
            (b0 + 1, 38, 0.2, 100),
            (b0 + 3, 38, 0.2, 100),
        ]
        if bar % 4 == 3:  # a tom fill into the next section
            drums += [(b0 + 3 + k / 4, p, 0.2, 100) for k, p in enumerate((50, 48, 45, 43))]
        if bar % 4 == 0:
            drums.append((b0, 49, 1.0, 110))
    mid.tracks.append(conductor)
    for name, (ch, program, notes) in parts.items():
        track = _track(name, _notes(ch, notes))
        track.insert(1, mido.Message("program_change", channel=ch, program=program, time=0))
        mid.tracks.append(track)
    return mid


SONGS = {"ode_waltz": ode_waltz, "frere_groove": frere_groove}
ARRANGEMENTS = {
    "frere_groove": "# lead on glockenspiel, the kit on drum pads; a slightly bouncier marble\n"
    "tracks:\n  lead: glockenspiel\n  kit: drums\nrestitution: 0.65\ncamera:\n  lens: 28\n",
}


def write(depot: Path) -> list[Path]:
    written = []
    for name, compose in SONGS.items():
        folder = depot / "songs" / name
        folder.mkdir(parents=True, exist_ok=True)
        with atomic.target(folder / "song.mid", mode=0o644) as tmp:  # a depot file: readable by all
            compose().save(str(tmp))
        written.append(folder / "song.mid")
        if name in ARRANGEMENTS:
            (folder / "arrangement.yaml").write_text(ARRANGEMENTS[name])
            written.append(folder / "arrangement.yaml")
    return written


@cli.command("demo_songs")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m blender_scripts.demo_songs", description=__doc__.splitlines()[0])
    parser.add_argument("--depot", type=Path, default=Path("depot"))
    parser.add_argument(
        "--dense", type=Path, metavar="FILE", help="write only the generated dense_pop song here"
    )
    ns = parser.parse_args(argv)
    depot = ns.depot
    try:
        if ns.dense:
            with atomic.target(ns.dense, mode=0o644) as tmp:
                dense_pop().save(str(tmp))
            paths = [ns.dense]
        else:
            paths = write(depot)
    except OSError as e:
        raise OutputError(f"cannot write the demo songs under {depot}: {e.strerror or e}") from None
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
