"""schemathesis hooks (SCHEMATHESIS_HOOKS=tests.fuzz_hooks) that send what its generators never
try in an integer parameter: digits Python's `str.isdigit()` accepts but `int()` refuses or
reads differently ('²', '١٢', '１２'), and numbers hundreds of digits long. Each such value
that went out is logged, one JSON line per request, to SCANBATCH_FUZZ_LOG, so the test can
check they were really sent (and what came back)."""

from __future__ import annotations

import json
import os

import schemathesis
from hypothesis import strategies as st

HOSTILE = ["²", "١٢", "１２", "9" * 400, "0" * 11 + "1"]


def _integer_names(parameters) -> list[str]:
    names = []
    for param in parameters:
        schema = param.definition.get("schema", {})
        if schema.get("type") == "integer":
            names.append(param.name)
    return names


def _inject(values: dict, names: list[str]):
    """Strategy: `values` as generated, or with one integer parameter replaced by a hostile
    value (most draws inject: generated values are what schemathesis already tries)."""
    present = [n for n in names if n in values] or names
    if not present:
        return st.just(values)
    hostile = st.tuples(st.sampled_from(present), st.sampled_from(HOSTILE)).map(
        lambda pair: {**values, pair[0]: pair[1]}
    )
    return st.one_of(hostile, st.just(values))


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    names = _integer_names(context.operation.path_parameters)
    return _inject(path_parameters or {}, names)


@schemathesis.hook
def flatmap_query(context, query):
    names = _integer_names(context.operation.query)
    return _inject(query or {}, names)


@schemathesis.hook
def after_call(context, case, response):
    sent = {
        **{f"path.{k}": v for k, v in (case.path_parameters or {}).items()},
        **{f"query.{k}": v for k, v in (case.query or {}).items()},
    }
    hostile = {k: v for k, v in sent.items() if v in HOSTILE}
    log = os.environ.get("SCANBATCH_FUZZ_LOG")
    if hostile and log:
        line = {
            "operation": f"{case.method} {case.path}",
            "values": {k: v[:12] for k, v in hostile.items()},
            "status": response.status_code,
        }
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
