"""The ground floor: what every other package may import, and which imports nothing of the project (only the
standard library and third-party libraries; a test derived from the imports proves it). The CLI kit, the
errors and their hints, the atomic writer, the share layout, the PNG check, process-group handling and the
render presets. The images copy it beside their entry points."""
