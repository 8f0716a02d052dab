"""Entry point Pulumi runs (Pulumi.yaml: main: infra/)."""

import sys
from pathlib import Path

# Pulumi runs this file by path; the repository root holds the renderlab and infra packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.program import main  # noqa: E402

main()
