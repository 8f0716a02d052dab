"""A person triggers a render in Airflow's own UI, in a real (headless) Chromium: log in, open the render DAG,
fill the trigger form, press Trigger, watch the run, read the chunk names and the notification. And a wrong
frame range is refused in the form with the schema's message. Screenshots of each step: <tmp>/screenshots.
"""

from __future__ import annotations

import functools
import json
import time
import urllib.parse
from pathlib import Path

import pytest

from renderlab.pipeline import depot_songs
from renderlab.pipeline.run_plan import run_folder_id
from renderlab.workstation.trigger import Api

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _dag_module():
    """The DAG file, loaded the way the dag-processor loads it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_dag_labels", REPO / "dags" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def preset_labels() -> list[str]:
    """The labels the DAG file gives the preset dropdown."""
    display = _dag_module()._params()["preset"].schema["values_display"]
    return [label for value, label in display.items() if value != "null"]


pytestmark = [pytest.mark.slow, pytest.mark.airflow]

SONG = "ode_waltz"
RUN_TIMEOUT_S = 900


def login(page, airflow) -> None:
    page.goto(airflow.url)
    page.get_by_label("Username").fill(airflow.user)
    page.get_by_label("Password").fill(airflow.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(airflow.url + "/")


def open_section(page, name: str) -> None:
    """Airflow's form shows one section (the DAG's `section=`) at a time: open the one named, or the one that
    holds the param `name`, as a person would."""
    params = _dag_module()._params()
    section = params[name].schema["section"] if name in params else name
    trigger = page.get_by_role("dialog").get_by_role("button", name=section, exact=True)
    if trigger.get_attribute("aria-expanded") != "true":
        trigger.click()
    content = trigger.get_attribute("aria-controls")  # the section's fields: shown once it has opened
    if content:
        page.locator(f"[id='{content}']").wait_for()


def open_trigger_form(page, airflow):
    page.goto(f"{airflow.url}/dags/render")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    open_section(page, "song")
    page.locator("#element_song").wait_for()
    return dialog


def fill(page, frames: str) -> None:
    open_section(page, "song")
    page.locator("#element_song").fill(SONG)
    open_section(page, "frames")
    page.locator("#element_frames").fill(frames)
    page.locator("input[name=element_frames_per_chunk]").fill("2")
    open_section(page, "preset")
    page.locator("#element_preset").click()  # a dropdown: pick the option by the label a person reads
    (demo,) = [label for label in preset_labels() if label.startswith("demo:")]
    page.get_by_text(demo, exact=True).click()
    page.locator("input[name=element_samples]").fill("1")
    page.locator("input[name=element_resolution_percentage]").fill("10")


def runs(api: Api) -> list[str]:
    return [r["dag_run_id"] for r in api.get("/api/v2/dags/render/dagRuns?limit=100")["dag_runs"]]


@pytest.fixture
def page(browser, airflow):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)  # a loaded 2-core machine
    try:
        yield page
    finally:
        context.close()


def test_form_shows_titles_descriptions_dropdowns_and_the_depot_songs(page, airflow, shots, monkeypatch):
    login(page, airflow)
    dialog = open_trigger_form(page, airflow)
    shots(page, "trigger-form", full_page=True)
    text = ""
    for section in _dag_module().SECTIONS:  # each section's fields, one section open at a time
        open_section(page, section)
        text += dialog.inner_text()
    assert "Notification" in text and "Render frames" in text
    for title in (
        "Song project",
        "Changelist",
        "Quality preset",
        "Frames",
        "Samples per pixel",
        "Resolution %",
    ):
        assert title in text
    assert "the first and last frame to render" in text  # a description a person understands
    # The song field suggests exactly the projects the depot has (the form's datalist).
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", json.dumps({"depot": f"file://{airflow.depot}"}))
    offered = page.locator("#list_song option").evaluate_all("els => els.map(e => e.value)")
    assert offered == depot_songs.listed() and SONG in offered
    # Enums are dropdowns whose options carry readable labels.
    open_section(page, "preset")
    page.locator("#element_preset").click()
    labels = preset_labels()
    assert len(labels) >= 3
    for label in labels:  # the DAG's own labels for the content's presets, not a copy
        assert page.get_by_text(label, exact=True).is_visible(), label
    shots(page, "preset-dropdown")


def test_invalid_frame_range_is_refused_in_the_form(page, airflow, shots):
    api = Api(airflow.url, airflow.user, airflow.password)
    before = runs(api)
    login(page, airflow)
    dialog = open_trigger_form(page, airflow)
    fill(page, "5-")
    shots(page, "invalid-frames-filled", full_page=True)
    dialog.get_by_role("button", name="Trigger").click()
    refusal = dialog.get_by_text("Invalid input for param frames")
    refusal.wait_for()
    shots(page, "refused", full_page=True)
    assert "'5-' does not match" in refusal.inner_text()
    assert "/runs/" not in page.url  # still in the form
    assert runs(api) == before  # and no run was created


def test_trigger_from_the_form_runs_to_success(page, airflow, shots):
    api = Api(airflow.url, airflow.user, airflow.password)
    began = time.monotonic()
    login(page, airflow)
    shots(page, "logged-in")
    dialog = open_trigger_form(page, airflow)
    fill(page, "1-4")
    assert page.locator("input[name=element_preset]").input_value() == "demo"
    shots(page, "filled", full_page=True)
    dialog.get_by_role("button", name="Trigger").click()
    page.wait_for_url("**/dags/render/runs/**")
    run_id = urllib.parse.unquote(page.url.split("/runs/", 1)[1].split("/")[0])
    shots(page, "triggered")
    q = urllib.parse.quote(run_id, safe="")
    run = api.get(f"/api/v2/dags/render/dagRuns/{q}")
    assert run["conf"] == {
        **run["conf"],
        "song": SONG,
        "frames": "1-4",
        "preset": "demo",
        "samples": 1,
        "resolution_percentage": 10,
        "frames_per_chunk": 2,
    }
    # The run, watched in the grid; the API is the barrier (no fixed sleeps).
    state, seen_running = run["state"], False
    while state not in ("success", "failed"):
        assert time.monotonic() - began < RUN_TIMEOUT_S, f"run {run_id} still {state}"
        tis = api.get(f"/api/v2/dags/render/dagRuns/{q}/taskInstances")["task_instances"]
        if not seen_running and any(t["task_id"] == "render_chunk" and t["state"] == "running" for t in tis):
            page.reload()
            shots(page, "rendering")
            seen_running = True
        time.sleep(2)
        state = api.get(f"/api/v2/dags/render/dagRuns/{q}")["state"]
    page.reload()
    shots(page, "finished")
    assert state == "success", api.get(f"/api/v2/dags/render/dagRuns/{q}/taskInstances")
    # The mapped render tasks carry their "frames A-B" names, in the UI.
    page.goto(f"{airflow.url}/dags/render/runs/{q}/tasks/render_chunk/mapped")
    page.get_by_text("frames 1-2", exact=True).wait_for()
    assert page.get_by_text("frames 3-4", exact=True).is_visible()
    shots(page, "mapped-render-tasks")
    # The success notification's record names the output folder; the notify task's result shows it in the UI.
    folder = airflow.share / "runs" / run_folder_id(run_id)
    record = json.loads((folder / "report" / "notification-success.json").read_text())
    assert record["state"] == "success" and record["song"] == SONG
    assert Path(record["run_folder"]) == folder and f"run folder: {folder}" in record["text"]
    assert [Path(v).parent for v in record["videos"]] == [folder / "video"] and Path(
        record["videos"][0]
    ).is_file()
    page.goto(f"{airflow.url}/dags/render/runs/{q}/tasks/notify/xcom")
    page.get_by_text(str(folder)).first.wait_for()
    shots(page, "notification")
    print(
        f"\nbrowser run: {time.monotonic() - began:.0f}s from login to success; screenshots in {shots.folder}"
    )
