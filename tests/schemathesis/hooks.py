"""Schemathesis hooks for swarmlog (loaded with SCHEMATHESIS_HOOKS=hooks).

Counts the requests sent, caps the `wait_ms` of generated requests, and adds one check to
the built-in ones: a refused request (4xx or 5xx) writes nothing. The log's head is read before each request; after a refusal,
every event between the two heads must be a timer's (actor `system`: a lock or lease that
ran out meanwhile), never the refused request's.
"""

import atexit
import json
import os
import urllib.request

import schemathesis

BASE_URL = os.environ["SWARMLOG_URL"]
COUNT_FILE = os.environ["SWARMLOG_REQUEST_COUNT_FILE"]
state = {"requests": 0, "head": 0}


def _get(path):
    with urllib.request.urlopen(BASE_URL + path, timeout=30) as response:
        return response.read().decode()


def _head():
    return json.loads(_get("/v1/audit/head"))["seq"]


@atexit.register
def _write_count():
    with open(COUNT_FILE, "w") as out:
        out.write(f"{state['requests']}\n")


# A claim or an acquire may wait up to 24 h by contract, and does when nothing frees up;
# the fuzzer's request timeout is 30 s. Generated waits are cut to this, which still
# exercises waiting, parking and the answer at the deadline.
WAIT_MS_MAX = 1000


@schemathesis.hook
def before_call(ctx, case, kwargs):
    state["requests"] += 1
    for body in (case.body, kwargs.get("json")):
        wait = body.get("wait_ms") if isinstance(body, dict) else None
        if isinstance(wait, int) and not isinstance(wait, bool) and wait > WAIT_MS_MAX:
            body["wait_ms"] = WAIT_MS_MAX
    state["head"] = _head()


@schemathesis.check
def refused_requests_write_nothing(ctx, response, case):
    if response.status_code < 400:
        return None
    before, after = state["head"], _head()
    if after == before:
        return None
    lines = _get(f"/v1/events?from={before + 1}&until={after}").splitlines()
    written = [json.loads(line) for line in lines if line.strip()]
    by_request = [event for event in written if event.get("actor") != "system"]
    if by_request:
        raise AssertionError(
            f"refused with {response.status_code}, yet the log gained "
            f"{[(event['seq'], event['type']) for event in by_request]}"
        )
    return None
