"""The Job entry points: build step, assemble, validate, gallery (the Blender image) and the fetch (the fetch
image). They stand on renderlab.base only, so each image copies just this folder's modules and the ground floor."""
