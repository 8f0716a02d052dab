"""Run `MODULE ARGS...` (given after Blender's `--`) as `python -m MODULE ARGS...` inside Blender.

Blender keeps running after a --python script returns; exiting here with the module's status makes the
container's exit status the module's, and nothing is printed after the module's JSON result line.
"""

import os
import runpy
import sys


def main() -> None:
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    if not argv:
        print("run_module: usage: blender ... --python run_module.py -- MODULE [ARGS...]", file=sys.stderr)
        code = 2
    else:
        sys.argv = list(argv)
        code = 0
        try:
            runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
        except SystemExit as e:
            if isinstance(e.code, int) or e.code is None:
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except ImportError as e:  # the module itself is missing: one line, like every other failure
            print(f"run_module: error: cannot run {argv[0]}: {e}", file=sys.stderr)
            code = 2
        except Exception as e:  # never a traceback (the modules catch their own; this is a bug)
            print(f"run_module: error: internal error {type(e).__name__} in {argv[0]}: {e}", file=sys.stderr)
            code = 70
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


main()
