"""Runs AWS CLI commands for lightningstor's tests in one Python process.

Each `aws` process spends most of its time importing botocore and awscli (about 0.6 s of CPU
here), and the tests run a few hundred commands. This helper imports them once and then runs
each command with the CLI's own driver — the same code path as the `aws` program: a new
driver and session per command, the command's environment, its stdout and stderr captured.

Protocol, one JSON object per line: first {"ready": bool, "why": str} from us; then for every
request {"args": [...], "env": {...}} on stdin, one answer {"rc": int, "out": str, "err": str}.
"""

import io
import json
import os
import sys

try:
    from awscli.clidriver import create_clidriver
except Exception as e:  # awscli is not importable by this interpreter: the caller falls back
    print(json.dumps({"ready": False, "why": repr(e)}), flush=True)
    sys.exit(0)

print(json.dumps({"ready": True, "why": ""}), flush=True)
answers = sys.stdout
base_env = dict(os.environ)
for line in sys.stdin:
    request = json.loads(line)
    os.environ.clear()
    os.environ.update(base_env)
    os.environ.update(request["env"])
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="replace", write_through=True)
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="replace", write_through=True)
    sys.stdout, sys.stderr = out, err
    try:
        rc = create_clidriver().main(request["args"])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - any failure is the command's failure
        err.write(repr(e))
        rc = 255
    finally:
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = answers, sys.__stderr__
    answers.write(json.dumps({
        "rc": rc if isinstance(rc, int) else 0,
        "out": out_bytes.getvalue().decode("utf-8", "replace"),
        "err": err_bytes.getvalue().decode("utf-8", "replace"),
    }) + "\n")
    answers.flush()
