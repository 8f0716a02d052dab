"""A stand-in for blender_scripts that follows its CLI contract with ffmpeg instead of Blender.

Only the pipeline's plumbing tests use it (fast, no bpy): same arguments, same outputs and result line.
The end-to-end tests run the real blender_scripts.
"""
