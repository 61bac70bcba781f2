"""Feed every case of hostile_cases.CASES to the workbench; print one JSON line per case.

Run by test_hostile.py in a subprocess under a memory limit (RLIMIT_AS), so a regression that lets an input
blow up fails the test instead of taking the machine down.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import workbench as wb
from workbench import errors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_cases import CASES


def fingerprint(ws_dir: Path) -> list[Any]:
    """Row counts and content digests of every table: equal before and after means untouched."""
    import duckdb

    con = duckdb.connect(str(ws_dir / "workspace.duckdb"), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        out = [(t, con.execute(f'SELECT count(*), sum(hash(t)) FROM "{t}" t').fetchall()[0]) for t in tables]
        out.append(("feedback_seq", con.execute("SELECT last_value FROM duckdb_sequences()").fetchall()))
        return out
    finally:
        con.close()


def run_case(case: dict[str, Any], ws: wb.Workspace, tmp: Path, run_id: str) -> tuple[str | None, str, int | None]:
    """(error class name or None, message, exit code for CLI cases)."""
    kind = case["kind"]
    if kind == "dataset":
        path = tmp / case["file"]
        path.write_bytes(case["data"])
        ws.add_dataset("hostile", path)
    elif kind == "template":
        prompt = wb.Prompt("p", case["user"], case.get("system"), tuple(case.get("few_shot", ())))
        ws.experiment("base", [prompt], [{"name": "m", "model": "openai/never-called"}]).plan()
    elif kind == "sql":
        ws.sql(case["query"], timeout=case.get("timeout"))
    elif kind == "spec":
        if case.get("dir"):
            path = tmp / "spec-folder"
            path.mkdir(exist_ok=True)
        else:
            path = tmp / "spec.yaml"
            path.write_text(case["yaml"])
        ws.from_spec(path).plan()
    elif kind == "cli":
        from workbench.cli import main

        for name, text in case.get("files", {}).items():
            (tmp / name).write_text(text)
        (tmp / "a-file").write_text("not a folder")
        argv = [a.format(ws=ws.path, tmp=tmp, run=run_id) for a in case["argv"]]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        return None, err.getvalue(), code
    return None, "no error", None


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    ws = wb.open(root / "ws")
    ws.add_dataset("base", [{"id": "c0", "q": "what is x?"}, {"id": "c1", "q": "and y?"}], id="id")
    run = ws.experiment("base", [wb.Prompt("p", "{{ q }}")], ["local/extractive"]).run(progress=False)
    only = set(sys.argv[1:])
    for case in CASES:
        if only and case["id"] not in only:
            continue
        tmp = root / case["id"]
        tmp.mkdir()
        before = fingerprint(ws.path)
        result: dict[str, Any] = {"id": case["id"]}
        try:
            name, message, code = run_case(case, ws, tmp, run.run_id)
            result.update(error=name, message=message, code=code)
        except errors.WorkbenchError as exc:
            expected = getattr(errors, case.get("error", "WorkbenchError"), errors.WorkbenchError)
            result.update(error=type(exc).__name__, typed=isinstance(exc, expected), message=str(exc))
        except BaseException as exc:  # noqa: BLE001 - any other exception is a failure of the case
            result.update(error=type(exc).__name__, typed=False, message=str(exc)[:500],
                          traceback=traceback.format_exc()[-3000:])
        result["untouched"] = fingerprint(ws.path) == before
        pattern = case.get("match", "")
        result["matched"] = bool(re.search(pattern, result.get("message") or "")) if pattern else True
        if case["kind"] == "cli":
            result["typed"] = result.get("code") == case["code"] and "Traceback" not in (result["message"] or "")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
