"""MIDI -> marble-music scene: parse, plan ballistic marbles, build .blend files, synthesize audio, render."""
