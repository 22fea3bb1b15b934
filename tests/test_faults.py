"""A real run (the `template` method, schema-validated JSON) through the openai backend against a loopback server
that injects every kind of fault (tests/fault_server.py, a fake, seeded): nothing is lost, nothing is written twice,
Retry-After is honoured, retries are bounded, and a dead endpoint stops the run instead of stalling it.

`pytest -m soak` runs the long variant (10,000 units at a 36% fault rate).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter

import pytest
from fault_server import CONTENT_FAULTS, FAULTS, FaultServer
from qa_run import answer, doc_text, qa_recipe, read_jsonl, unit_keys, write_corpus

from lcsynth.errors import BackendError
from lcsynth.run.local import run_recipe

MAX_RETRIES = 6
RETRY_AFTER = 1


def fault_run(tmp_path, units: int, rate: float, seed: int = 7, concurrency: int = 32):
    """Run `units` documents through a server injecting each fault at `rate`; return (summary, server, seconds)."""
    write_corpus(tmp_path, [doc_text(i, repeat=4) for i in range(units)])
    server = FaultServer(answer, {fault: rate for fault in FAULTS}, seed=seed, retry_after=RETRY_AFTER,
                         hang_seconds=2.0)
    spec = qa_recipe(tmp_path, "", backend={"max_retries": MAX_RETRIES, "timeout": 0.5,
                                            "max_concurrency": concurrency},
                     limits={"max_in_flight": concurrency})

    async def main():
        async with server:
            spec.backend.base_url = server.url
            started = time.monotonic()
            summary = await run_recipe(spec, show_progress=False)
            return summary, time.monotonic() - started

    summary, seconds = asyncio.run(main())
    return summary, server, seconds


def check_fault_run(tmp_path, units: int, rate: float) -> None:
    summary, server, seconds = fault_run(tmp_path, units, rate)
    run_dir = summary.run_dir
    rows = [r for shard in sorted(run_dir.glob("sft-*.jsonl")) for r in read_jsonl(shard)]
    rejects = read_jsonl(run_dir / "rejects.jsonl")
    keys = unit_keys(run_dir)
    faults = sum(server.injected.values())
    print(f"\nfault run: {units} units, {server.requests} requests, {faults} faults "
          f"({faults / server.requests:.1%}): {dict(sorted(server.injected.items()))}; {len(rows)} rows, "
          f"{len(rejects)} rejects {dict(Counter(r['reason'] for r in rejects))}, "
          f"{summary.timings['retries']} retries, {len(server.retry_gaps)} Retry-After waits "
          f"(shortest {min(g for _, g in server.retry_gaps):.3f} s), {seconds:.1f} s")

    # The load was real: enough requests, enough faults, every kind of fault.
    assert server.requests >= 1000 and faults / server.requests >= 0.2
    assert set(server.injected) == set(FAULTS)
    # Every planned unit is accounted for exactly once.
    assert len(rows) + len(rejects) == units and summary.manifest["counts"]["units"] == units
    assert len(keys) == len(set(keys)) and set(keys) == {(f"d{i}", 0) for i in range(units)}
    # Rows hold only healthy answers; a fault became a reject or a retry, never a row.
    for row in rows:
        doc = int(row["meta"]["doc_id"][1:])
        assert row["messages"][1]["content"] == f"topic{doc}"
    assert {r["reason"] for r in rejects} <= {"output_truncated", "invalid_json", "invalid_output", "backend_error"}
    assert Counter(r["reason"] for r in rejects)["output_truncated"] <= server.injected["length"]
    # Retry-After was honoured: the same request never came back before the server said.
    assert server.retry_gaps and all(gap >= asked - 0.05 for asked, gap in server.retry_gaps), server.retry_gaps
    # Retries are bounded per request; the client counts every one the server saw (and those timed out on the way).
    assert max(server.arrivals.values()) <= MAX_RETRIES + 1
    assert server.retries_seen <= summary.timings["retries"] <= MAX_RETRIES * len(server.arrivals)
    # Content faults are answers: re-asked with a new seed, not re-sent (a re-sent body would be a transport retry).
    assert server.injected.keys() >= set(CONTENT_FAULTS)
    # The cache is whole and holds answers the server completed (one per row at least; none a fault cut short).
    with sqlite3.connect(tmp_path / "out" / "cache.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        cached = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert len(rows) <= cached <= len(server.answered)


def test_a_thousand_requests_through_a_fifth_of_faults_lose_and_repeat_nothing(tmp_path):
    check_fault_run(tmp_path, units=900, rate=0.02)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_ten_thousand_units_through_a_third_of_faults(tmp_path):
    check_fault_run(tmp_path, units=10_000, rate=0.03)


def test_a_dead_endpoint_stops_the_run_soon_and_the_rerun_goes_on(tmp_path):
    units, limit, in_flight, retries = 300, 12, 6, 2
    write_corpus(tmp_path, [doc_text(i) for i in range(units)])
    dead, healthy = FaultServer(answer, {"status_503": 1.0}), FaultServer(answer)
    spec = qa_recipe(tmp_path, "", backend={"max_retries": retries, "max_concurrency": in_flight},
                     limits={"max_in_flight": in_flight, "max_failures_in_a_row": limit})

    async def run_against(server):
        async with server:
            spec.backend.base_url = server.url
            return await run_recipe(spec, show_progress=False)

    stopped = (rf"^backend: {limit} units in a row failed after every retry \(last: HTTP 503 after {retries} retries: "
               r"injected status_503\); the endpoint looks down")
    with pytest.raises(BackendError, match=stopped):
        asyncio.run(run_against(dead))
    # Only units already started asked anything (within their retries; those in flight at the stop were cut short).
    assert len(dead.arrivals) < limit + in_flight and max(dead.arrivals.values()) == retries + 1
    summary = asyncio.run(run_against(healthy))  # the endpoint is back: the same command goes on
    keys = unit_keys(summary.run_dir)
    assert len(keys) == len(set(keys)) == units
    rejects = read_jsonl(summary.run_dir / "rejects.jsonl")
    assert {r["reason"] for r in rejects} <= {"backend_error"} and len(rejects) < limit  # committed before the stop
    assert summary.rows["sft"] == units - len(rejects)
