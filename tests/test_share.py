from pathlib import PurePosixPath

import pytest

from renderlab.base.share import ShareLayout


def test_layout_paths():
    share = ShareLayout(PurePosixPath("/mnt/share"))
    assert share.assets("ode-to-joy") == PurePosixPath("/mnt/share/assets/ode-to-joy")
    assert share.manifest("ode-to-joy", 42).name == "manifest-42.json"
    assert share.frames("r1", "loop") == PurePosixPath("/mnt/share/runs/r1/frames/loop")
    assert share.video("r1").parent == share.run("r1")
    assert share.gallery_run("r1") == PurePosixPath("/mnt/share/gallery/runs/r1")
    assert share.gallery_run("r1").parent.parent == share.gallery()


@pytest.mark.parametrize("bad", ["..", "a/b", "", "x" * 200, "../etc", "with space"])
def test_unsafe_segments_are_refused(bad):
    share = ShareLayout(PurePosixPath("/s"))
    with pytest.raises(ValueError, match="not a safe path segment"):
        share.run(bad)
