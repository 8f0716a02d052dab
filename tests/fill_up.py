"""Take every byte left on a filesystem, as a share that filled up: a filler file, its bulk allocated (instant, and
a sparse image under the filesystem stays sparse), then the last scraps written until ENOSPC."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


def fill(path: Path) -> int:
    """Create `path` and grow it until its filesystem has no byte left; the bytes it took."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    taken = max(shutil.disk_usage(path.parent).free - (4 << 20), 0)
    try:
        if taken:
            os.posix_fallocate(fd, 0, taken)
            os.lseek(fd, taken, os.SEEK_SET)
        for size in (1 << 16, 1 << 10, 1):
            try:
                while n := os.write(fd, b"\0" * size):
                    taken += n
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return taken
