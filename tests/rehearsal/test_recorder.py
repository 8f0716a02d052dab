"""The rehearsal's recorder reads kubectl's watch stream (no cluster needed for that part): documents that
arrive pretty-printed, split over lines, several per read, are each decoded once and whole."""

from __future__ import annotations

import json

from tests.rehearsal.recorder import Documents, Recorder


def test_watch_documents_are_decoded_whole_and_once():
    events = [
        {"type": "ADDED", "object": {"metadata": {"name": "render-main-1-4"}, "status": {}}},
        {"type": "MODIFIED", "object": {"metadata": {"name": "render-main-1-4"}, "status": {"succeeded": 1}}},
        {"type": "DELETED", "object": {"metadata": {"name": "render-main-1-4"}, "status": {"succeeded": 1}}},
    ]
    text = "".join(json.dumps(e, indent=4) + "\n" for e in events)
    docs, seen = Documents(), []
    for i in range(0, len(text), 7):  # arbitrary cuts, as lines and reads arrive
        seen.extend(docs.feed(text[i : i + 7]))
    assert seen == events and docs.buffer == ""


def test_the_last_state_of_a_deleted_job_is_kept():
    r = Recorder(["kubectl"], "render", "renderlab/run=x")
    r._seen("jobs", {"metadata": {"name": "j"}, "status": {}})
    r._seen("jobs", {"metadata": {"name": "j"}, "status": {"completionTime": "2026-12-06T16:00:00Z"}})
    assert r.records()["jobs"]["items"] == [
        {"metadata": {"name": "j"}, "status": {"completionTime": "2026-12-06T16:00:00Z"}}
    ]
