"""The corpus of hostile inputs: each gets a clear, typed error and leaves stored data untouched.

Grow it whenever a bug is found: add a dict. Kinds and their fields:

- ``dataset``: ``data`` (bytes of a file named ``file``) -> ``ws.add_dataset``
- ``template``: ``user`` (and optional ``system`` / ``few_shot``) -> ``plan()`` of an experiment
- ``sql``: ``query`` -> ``ws.sql``
- ``spec``: ``yaml`` text (or ``dir: true`` for a folder) -> ``ws.from_spec(...).plan()``
- ``cli``: ``argv`` (``{ws}``, ``{tmp}``, ``{spec}`` are filled in) -> ``llmops`` main, exit code ``code``

``error`` is the expected exception class name (any subclass of it passes), ``match`` a regex the message must
contain.
"""

from __future__ import annotations

import codecs
from typing import Any

DEEP = b'{"q": "x", "v": ' + b"[" * 3000 + b"]" * 3000 + b"}\n"
DEEP_OBJ = b'{"q": "x", "v": ' + b'{"a":' * 200 + b"1" + b"}" * 200 + b"}\n"

CASES: list[dict[str, Any]] = [
    # -- datasets ------------------------------------------------------------------------------------
    {"id": "jsonl-nested-3000", "kind": "dataset", "file": "d.jsonl", "data": b'{"q": "ok"}\n' + DEEP,
     "error": "DatasetError", "match": "line 2 nests"},
    {"id": "jsonl-nested-objects-200", "kind": "dataset", "file": "d.jsonl", "data": DEEP_OBJ,
     "error": "DatasetError", "match": "line 1: column 'v' nests .* more than 64"},
    {"id": "json-nested-5000", "kind": "dataset", "file": "d.json", "data": b"[" * 5000 + b"]" * 5000,
     "error": "DatasetError", "match": "too deeply"},
    {"id": "utf16-bom", "kind": "dataset", "file": "d.jsonl", "data": codecs.BOM_UTF16_LE + '{"q": "é"}\n'.encode(
        "utf-16-le"), "error": "DatasetError", "match": "UTF-16.*iconv -f UTF-16 -t UTF-8"},
    {"id": "utf32-bom", "kind": "dataset", "file": "d.csv", "data": 'q\nx\n'.encode("utf-32"),
     "error": "DatasetError", "match": "UTF-32"},
    {"id": "latin1-csv", "kind": "dataset", "file": "d.csv",
     "data": "q,a\nCafé crème brûlée à la française,b\n".encode("latin-1"),
     "error": "DatasetError", "match": r"not valid UTF-8 \(line 2.*looks like .*iconv"},
    {"id": "jsonl-syntax-column", "kind": "dataset", "file": "d.jsonl",
     "data": '{"q": "ok"}\n{"q": "ééé", "a": 1,, "b": 2}\n'.encode(), "error": "DatasetError",
     "match": r"line 2 is not valid JSON \(column 21\).*\n.*\n +\^"},
    {"id": "jsonl-not-object", "kind": "dataset", "file": "d.jsonl", "data": b'[1, 2]\n',
     "error": "DatasetError", "match": "line 1 is a JSON list"},
    {"id": "json-scalar", "kind": "dataset", "file": "d.json", "data": b'42', "error": "DatasetError",
     "match": "list of objects"},
    {"id": "empty-file", "kind": "dataset", "file": "d.csv", "data": b"", "error": "DatasetError", "match": ""},
    {"id": "unknown-format", "kind": "dataset", "file": "d.xlsx", "data": b"PK\x03\x04", "error": "DatasetError",
     "match": "unknown dataset format"},
    {"id": "binary-as-jsonl", "kind": "dataset", "file": "d.jsonl", "data": bytes(range(256)) * 4,
     "error": "DatasetError", "match": ""},
    # -- templates -----------------------------------------------------------------------------------
    {"id": "huge-repeat", "kind": "template", "user": "{{ 'a' * 10**10 }}", "error": "TemplateError",
     "match": "variant 'p'.*limit.*10,000,000,000.*max_prompt_chars.*cases: c0"},
    {"id": "input-repeat", "kind": "template", "user": "{{ q * 100000000 }}", "error": "TemplateError",
     "match": "limit"},
    {"id": "nested-range", "kind": "template",
     "user": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "error": "TemplateError", "match": "render time budget"},
    {"id": "doubling-namespace", "kind": "template",
     "user": "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "error": "TemplateError", "match": "limit"},
    {"id": "center-width", "kind": "template", "user": "{{ q|center(10**12) }}", "error": "TemplateError",
     "match": "limit"},
    {"id": "format-width", "kind": "template", "user": "{{ '{:>99999999999}'.format(q) }}",
     "error": "TemplateError", "match": "format width"},
    {"id": "percent-width", "kind": "template", "user": "{{ '%099999999999d' % 1 }}", "error": "TemplateError",
     "match": "format width"},
    {"id": "replace-blowup", "kind": "template", "user": "{{ (q * 1000)|replace('', q * 1000) }}",
     "error": "TemplateError", "match": "replace"},
    {"id": "binary-macro", "kind": "template",
     "user": "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
     "error": "TemplateError", "match": "render time budget|limit"},
    {"id": "macro-recursion", "kind": "template", "user": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
     "error": "TemplateError", "match": "recurses too deeply"},
    {"id": "block-set-blowup", "kind": "template",
     "user": "{% set x %}{% for i in range(100000) %}{{ q * 900 }}{% endfor %}{% endset %}{{ x|length }}",
     "error": "TemplateError", "match": "limit"},
    {"id": "sandbox-escape", "kind": "template", "user": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
     "error": "TemplateError", "match": "SecurityError|unsafe"},
    {"id": "list-mutation", "kind": "template", "user": "{% set l = [] %}{{ l.append(1) }}",
     "error": "TemplateError", "match": "unsafe"},
    {"id": "every-part-reported", "kind": "template", "system": "{{ nope_system }}", "user": "{{ 1/0 }}",
     "few_shot": [{"role": "user", "content": "{{ 'x' * 10**9 }}"}], "error": "TemplateError",
     "match": r"(?s)system: undefined.*few_shot\[0\]: limit.*user: ZeroDivisionError"},
    {"id": "deeply-nested-expression", "kind": "template", "user": "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
     "error": "TemplateError", "match": ""},
    # -- SQL -----------------------------------------------------------------------------------------
    {"id": "sql-insert", "kind": "sql", "query": "INSERT INTO datasets VALUES ('x','y',1,NULL,'[]',0,NULL,now())",
     "error": "ValidationError", "match": "read-only"},
    {"id": "sql-delete", "kind": "sql", "query": "DELETE FROM dataset_cases", "error": "ValidationError",
     "match": "read-only"},
    {"id": "sql-nextval", "kind": "sql", "query": "SELECT nextval('feedback_seq')", "error": "ValidationError",
     "match": "read-only|SQL error"},
    {"id": "sql-setval", "kind": "sql", "query": "SELECT setval('feedback_seq', 99)", "error": "ValidationError",
     "match": ""},
    {"id": "sql-copy", "kind": "sql", "query": "COPY datasets TO '/tmp/x.csv'", "error": "ValidationError",
     "match": "read-only"},
    {"id": "sql-attach", "kind": "sql", "query": "ATTACH '/tmp/other.duckdb' AS o", "error": "ValidationError",
     "match": "read-only"},
    {"id": "sql-read-file", "kind": "sql", "query": "SELECT * FROM read_text('/etc/hostname')",
     "error": "ValidationError", "match": "SQL error"},
    {"id": "sql-two-statements", "kind": "sql", "query": "SELECT 1; DROP TABLE datasets",
     "error": "ValidationError", "match": "exactly one"},
    {"id": "sql-explain-analyze-write", "kind": "sql", "query": "EXPLAIN ANALYZE DELETE FROM datasets",
     "error": "ValidationError", "match": "read-only"},
    {"id": "sql-pragma", "kind": "sql", "query": "PRAGMA enable_external_access", "error": "ValidationError",
     "match": "read-only"},
    {"id": "sql-checkpoint", "kind": "sql", "query": "CHECKPOINT", "error": "ValidationError", "match": ""},
    {"id": "sql-set", "kind": "sql", "query": "SET enable_external_access = true", "error": "ValidationError",
     "match": "read-only"},
    {"id": "sql-long-running", "kind": "sql", "query": "SELECT count(*) FROM range(100000000000) a",
     "timeout": 0.5, "error": "ValidationError", "match": "stopped after 0.5 s"},
    {"id": "sql-garbage", "kind": "sql", "query": "SELEC * FORM x", "error": "ValidationError",
     "match": "does not parse"},
    # -- specs ---------------------------------------------------------------------------------------
    {"id": "spec-directory", "kind": "spec", "dir": True, "error": "SpecError", "match": "is a folder"},
    {"id": "spec-not-yaml", "kind": "spec", "yaml": "dataset: [unclosed", "error": "SpecError",
     "match": "not valid YAML"},
    {"id": "spec-yaml-bomb", "kind": "spec",
     "yaml": "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
             "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
     "error": "SpecError", "match": "unknown key"},
    {"id": "spec-hot-temperature", "kind": "spec",
     "yaml": "dataset: {name: base}\nprompts: [{name: p, user: '{{ q }}'}]\n"
             "models: [{name: m, model: openai/x, params: {temperature: hot}}]\n",
     "error": "SpecError", "match": "temperature must be a number"},
    {"id": "spec-bearer-header", "kind": "spec",
     "yaml": "dataset: {name: base}\nprompts: [{name: p, user: '{{ q }}'}]\nmodels: [{name: m, model: openai/x, "
             "params: {extra_headers: {Authorization: 'Bearer sk-abcdefghijklmnopqrstuvwx'}}}]\n",
     "error": "SpecError", "match": "credential"},
    {"id": "spec-repeats-yes", "kind": "spec",
     "yaml": "dataset: {name: base}\nprompts: [{name: p, user: '{{ q }}'}]\nmodels: [{name: m, model: openai/x}]\n"
             "repeats: yes\n", "error": "SpecError", "match": "repeats"},
    {"id": "spec-prompt-limit-too-small", "kind": "spec",
     "yaml": "dataset: {name: base}\nprompts: [{name: p, user: 'Q: {{ q }}'}]\nmodels: [{name: m, model: openai/x}]\n"
             "max_prompt_chars: 3\n", "error": "TemplateError", "match": "longer than 3 characters"},
    {"id": "spec-retrieval-eval-question", "kind": "cli",
     "files": {"r.yaml": "dataset: {name: base}\nretrievers: [{name: r}]\nquestion: q\ngold: g\n"},
     "argv": ["retrieval-eval", "{tmp}/r.yaml", "-w", "{ws}"], "code": 2, "match": "query: <column>"},
    # -- CLI -----------------------------------------------------------------------------------------
    {"id": "cli-spec-is-a-directory", "kind": "cli", "argv": ["run", "{tmp}", "-w", "{ws}"], "code": 2,
     "match": "is a folder"},
    {"id": "cli-spec-missing", "kind": "cli", "argv": ["run", "{tmp}/nope.yaml", "-w", "{ws}"], "code": 2,
     "match": "does not exist"},
    {"id": "cli-output-missing-folder", "kind": "cli",
     "argv": ["results", "{run}", "-w", "{ws}", "-o", "{tmp}/no/such/dir/r.csv"], "code": 2,
     "match": "does not exist; create it first"},
    {"id": "cli-output-is-a-directory", "kind": "cli", "argv": ["results", "{run}", "-w", "{ws}", "-o", "{tmp}"],
     "code": 2, "match": "is a folder"},
    {"id": "cli-output-unwritable", "kind": "cli", "argv": ["results", "{run}", "-w", "{ws}", "-o", "/proc/r.csv"],
     "code": 2, "match": "cannot write|permission"},
    {"id": "cli-workspace-is-a-file", "kind": "cli", "argv": ["runs", "-w", "{tmp}/a-file"], "code": 2,
     "match": "workspace"},
    {"id": "cli-sql-write", "kind": "cli", "argv": ["sql", "DROP TABLE runs", "-w", "{ws}"], "code": 2,
     "match": "read-only"},
    {"id": "cli-unknown-run", "kind": "cli", "argv": ["resume", "nope", "-w", "{ws}"], "code": 2,
     "match": "no run 'nope'"},
    {"id": "cli-parquet-to-stdout", "kind": "cli", "argv": ["results", "{run}", "-w", "{ws}", "--format", "parquet"],
     "code": 2, "match": "parquet is binary"},
]
