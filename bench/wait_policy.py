"""OpenMP's wait policy: one query-embedding process alone, and two at once.

``python -m bench.wait_policy`` runs a loop of one-query embeddings (the service's model,
torch) for a few seconds, alone and then as two processes at the same time, once with the
runtime's default wait policy and once with ``OMP_WAIT_POLICY=PASSIVE``; it prints the p50
per query and how many queries each process got through (docs/speed.md).
"""

from __future__ import annotations

import os
import subprocess
import sys

from bench import MODEL_DIR, REPO_ROOT, log

LOOP = """
import statistics, sys, time
from pathlib import Path
from rag.embedding.embedder import SentenceTransformerEmbedder
model = SentenceTransformerEmbedder(model_dir=Path(sys.argv[1]))
questions = [f"Wann wurde das Gebäude Nummer {i} in Berlin eröffnet?" for i in range(40)]
model.embed_queries(questions[:3])
seconds, end = [], time.time() + float(sys.argv[2])
while time.time() < end:
    for q in questions:
        started = time.perf_counter()
        model.embed_queries([q])
        seconds.append(time.perf_counter() - started)
print(f"{statistics.median(seconds) * 1000:.1f} {len(seconds)}")
"""


def run_loops(processes: int, seconds: float, policy: str | None) -> list[tuple[float, int]]:
    """(p50 ms, queries) of each of ``processes`` loops started together."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    cmd = [sys.executable, "-c", LOOP, str(MODEL_DIR), str(seconds)]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        p50, count = out.split()
        results.append((float(p50), int(count)))
    return results


def main() -> None:
    seconds = float(os.environ.get("BENCH_WAIT_SECONDS", "20"))
    print("| wait policy | processes | p50 per query, each | queries, each |")
    print("|---|---|---|---|")
    for policy in (None, "PASSIVE"):
        for processes in (1, 2):
            log(f"{processes} process(es), OMP_WAIT_POLICY={policy or 'default'}")
            results = run_loops(processes, seconds, policy)
            p50s = " / ".join(f"{p:.1f} ms" for p, _ in results)
            counts = " / ".join(str(n) for _, n in results)
            print(f"| {policy or 'default'} | {processes} | {p50s} | {counts} |", flush=True)


if __name__ == "__main__":
    main()
