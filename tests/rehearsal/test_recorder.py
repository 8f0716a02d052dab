"""The rehearsal's recorder reads kubectl's watch stream (no cluster needed for that part): documents that
arrive pretty-printed, split over lines, several per read, are each decoded once and whole."""

from __future__ import annotations

import json
from pathlib import Path

from tests.rehearsal.recorder import FOLLOW_TRIES, Documents, Recorder, container_started


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


def _pod(name: str, state: dict | None) -> dict:
    statuses = [{"name": "main", "state": state}] if state is not None else []
    return {"metadata": {"name": name}, "spec": {"nodeName": "n1"}, "status": {"containerStatuses": statuses}}


def test_a_log_is_followed_only_once_its_container_has_started():
    assert not container_started(_pod("p", None))  # scheduled, no container yet
    assert not container_started(_pod("p", {"waiting": {"reason": "ContainerCreating"}}))
    assert not container_started(
        _pod("p", {"terminated": {"reason": "ContainerStatusUnknown", "startedAt": None}})
    )
    assert container_started(_pod("p", {"running": {"startedAt": "2026-12-06T20:56:41Z"}}))
    assert container_started(_pod("p", {"terminated": {"exitCode": 0, "startedAt": "2026-12-06T20:56:41Z"}}))


def test_a_follower_that_failed_is_started_again_and_its_stderr_kept(tmp_path: Path):
    # A kubectl stand-in that answers as the real one does for a container not started yet, once, then
    # prints the pod's log with timestamps.
    calls = tmp_path / "calls"
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {calls}\n'
        f'if [ "$(wc -l < {calls})" -eq 1 ]; then\n'
        '  echo \'Error from server (BadRequest): container "main" in pod "p" is waiting to start\' >&2; exit 1\n'
        "fi\n"
        "echo '2026-12-06T20:56:42.5Z render: frame 1 (1/12) 0.5 s on n1'\n"
    )
    kubectl.chmod(0o755)
    r = Recorder([str(kubectl)], "render", "renderlab/run=x")
    running = _pod("p", {"running": {"startedAt": "2026-12-06T20:56:41Z"}})
    r._seen("pods", _pod("p", {"waiting": {"reason": "ContainerCreating"}}))
    assert not calls.exists()  # nothing to follow yet
    r._seen("pods", running)
    r.followers["p"].proc.wait(timeout=30)
    first = r.records()
    assert first["logs"]["p"] == "" and "waiting to start" in first["log_errors"]["p"]
    r._seen("pods", running)  # the pod's next change: the failed follower is started again
    r._seen("pods", running)  # one that is running or succeeded is not started twice
    out = r.save(tmp_path / "records.json")
    assert out["logs"]["p"].startswith("2026-12-06T20:56:42.5Z render: frame 1 ")
    assert out["log_errors"] == {}
    assert calls.read_text().splitlines() == ["-n render logs -f --timestamps pod/p"] * 2
    assert json.loads((tmp_path / "records.json").read_text())["logs"] == out["logs"]
    assert not r.folder.exists()


def test_a_follower_is_not_retried_without_end(tmp_path: Path):
    kubectl = tmp_path / "kubectl"
    kubectl.write_text("#!/bin/sh\necho 'error: pods \"p\" not found' >&2; exit 1\n")
    kubectl.chmod(0o755)
    r = Recorder([str(kubectl)], "render", "renderlab/run=x")
    running = _pod("p", {"running": {"startedAt": "2026-12-06T20:56:41Z"}})
    for _ in range(FOLLOW_TRIES + 3):
        r._seen("pods", running)
        r.followers["p"].proc.wait(timeout=30)
    assert r.followers["p"].tries == FOLLOW_TRIES
    assert r.records()["log_errors"]["p"] == f'exit 1 after {FOLLOW_TRIES} tries: error: pods "p" not found'
