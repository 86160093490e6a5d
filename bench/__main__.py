"""``python -m bench``: run every benchmark section, write JSON results, print one table.

Each section runs in a child process (``python -m bench --child NAME``), so one section's
memory (a 1.5 GB FAISS index, a loaded model) neither inflates the next one's RSS deltas
nor survives it, and a section that fails or times out is reported instead of ending the
run. ``--quick`` shrinks every section to seconds (for trying the harness, not numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench import REPO_ROOT, RESULTS_DIR, Row, Section, machine_load

# name -> (module, seconds allowed for the child); the order is the order they run in.
SECTIONS: dict[str, tuple[str, int]] = {
    "embeddings": ("bench.bench_embeddings", 600),  # the first run also exports ONNX
    "backends": ("bench.bench_backends", 400),  # throughput per backend, interleaved
    "search": ("bench.bench_search", 600),
    "ingest": ("bench.bench_ingest", 480),
    "ingest-ratio": ("bench.bench_ingest_ratio", 1200),  # 2 x (2 rag ingests + plain encoding)
    "http": ("bench.bench_http", 600),  # latency, paired with plain, load on the same server
    "baselines": ("bench.bench_baselines", 300),
    "load": ("bench.bench_load", 260),  # standalone load test (its own server)
    "postgres": ("bench.bench_postgres", 600),  # pgvector and FAISS HNSW at 100k
    "ray": ("bench.bench_postgres:run_ingest", 600),  # ingest in process and on a local Ray
    "workers": ("bench.bench_workers", 600),  # rag serve --workers 4 on PostgreSQL, 60 s load
}
DEFAULT_SECTIONS = (
    "embeddings",
    "backends",
    "search",
    "ingest",
    "ingest-ratio",
    "http",
    "baselines",
    "postgres",
    "ray",
)
BUDGET_S = 20 * 60


def _environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in (
        "torch",
        "sentence-transformers",
        "transformers",
        "onnxruntime",
        "faiss-cpu",
        "numpy",
        "fastapi",
        "uvicorn",
        "llama-index-core",
    ):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "versions": versions,
        **machine_load(),
    }


def _entry(module_name: str) -> Callable[[bool], list[Section]]:
    """A section module's ``run(quick) -> list[Section]``."""
    if module_name == "bench.bench_embeddings":
        return _run_embeddings
    module_name, _, function = module_name.partition(":")
    module = importlib.import_module(module_name)
    run: Callable[[bool], list[Section]] = getattr(module, function or "run")
    return run


def _run_embeddings(quick: bool) -> list[Section]:
    """bench_embeddings has a command-line ``main()`` that writes embeddings.json itself:
    call it, then turn that file into table rows."""
    module = importlib.import_module("bench.bench_embeddings")
    argv = ["bench_embeddings"]
    if quick:
        argv += ["--backends", "torch", "--passages", "32", "--queries", "10"]
    saved = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(sys.stderr):  # its own table: progress, not the result
            module.main()
    finally:
        sys.argv = saved
    result = json.loads(Path(module.RESULTS).read_text("utf-8"))
    return [embedding_section(result)]


def embedding_section(result: dict[str, Any]) -> Section:
    """Table rows from bench_embeddings' JSON."""
    section = Section("embeddings", data=result)
    try:
        machine, work = result["machine"], result["workload"]
        section.add(
            "float32 matmul throughput of this machine (numpy, large square matmul)",
            f"{machine['numpy_float32_matmul_gflops']} GFLOP/s",
            f"workload: {work['passages']} GermanQuAD passages, "
            f"{work['mean_tokens_per_passage']} tokens, {work['gflop_per_passage']} GFLOP each",
        )
        for row in result["backends"]:
            # Recall@5 may sit at the top level or per chunking variant.
            recalls = {k: v.get("recall_at_5") for k, v in row.items() if isinstance(v, dict)}
            if "recall_at_5" in row:
                recalls["dev"] = row["recall_at_5"]
            recall = ", ".join(f"{k} {v:.2f}" for k, v in recalls.items() if v is not None)
            section.add(
                f"embedding, {row['backend']}: batch {work['batch_size']} / one query",
                f"{row['passages_per_s']} passages/s; query p50 {row['query_median_ms']} ms, "
                f"p95 {row['query_p95_ms']} ms",
                f"{row['model_gflops_per_s']} GFLOP/s = {row['share_of_machine']:.0%} of the "
                f"matmul peak; load {row['load_s']} s"
                + (f"; dev Recall@5 {recall}" if recall else ""),
            )
    except (KeyError, TypeError, ValueError) as exc:
        # bench_embeddings owns its format; a change there must not lose the other sections.
        section.rows = [
            Row("results", "see bench/results/embeddings.json", f"not tabulated: {exc!r}")
        ]
    return section


def run_child(name: str, out: Path, quick: bool) -> int:
    """Run one section in this process and write its sections as JSON to ``out``."""
    module_name, _ = SECTIONS[name]
    started = time.perf_counter()
    sections = _entry(module_name)(quick)
    payload = {
        "seconds": time.perf_counter() - started,
        "sections": [s.to_json() for s in sections],
    }
    out.write_text(json.dumps(payload, indent=2, default=float), encoding="utf-8")
    return 0


def _run_section(name: str, quick: bool, env: dict[str, str]) -> dict[str, Any]:
    """Run a section in a child process; a failure becomes a section with one FAILED row."""
    _, timeout = SECTIONS[name]
    if name == "search" and env.get("BENCH_MAX_BUILD_S"):
        # each scale may now spend that long per ANN index
        timeout += 2 * int(float(env["BENCH_MAX_BUILD_S"]))
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, "-m", "bench", "--child", name, "--out", str(out)]
        if quick:
            cmd.append("--quick")
        started = time.perf_counter()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        # The child's own prints go to stderr: stdout carries only the final table. Its own
        # session, so a timeout also ends what it started (the uvicorn server).
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=sys.stderr, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout)
            failure = None if code == 0 else f"exit status {code}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            failure = f"timed out after {timeout} s"
        except BaseException:  # Ctrl-C or SIGTERM: do not leave the child running
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        seconds = time.perf_counter() - started
        print(f"== {name} done in {seconds:.0f} s", file=sys.stderr, flush=True)
        if failure is None and out.exists():
            payload: dict[str, Any] = json.loads(out.read_text("utf-8"))
            payload["wall_s"] = seconds
            return payload
    failed = Section(name)
    failed.add("section", "FAILED", f"{failure or 'no output'}; see the log above")
    return {"seconds": seconds, "wall_s": seconds, "sections": [failed.to_json()], "failed": True}


def _add_ratios(results: dict[str, dict[str, Any]]) -> list[Row]:
    """The speed goals' ratios, across sections, with their goals."""
    rows: list[Row] = []
    ingest = _part_data(results, "ingest-ratio", "ingest-ratio")
    ratios, default = ingest.get("ratio", {}), ingest.get("default")
    if default in ratios:
        others = ", ".join(f"{m} windows {r:.2f}x" for m, r in ratios.items() if m != default)
        rows.append(
            Row(
                f"`rag ingest` ({default} windows, default) / plain ST encoding (goal <= 1.5x)",
                f"{ratios[default]:.2f}x",
                others,
            )
        )
    base = _find(results, "baselines", "baselines", "plain", "latency", "p50_ms")
    for label, path in (
        ("in-process RagService.search (hybrid)", ("baselines", "service", "latency", "p50_ms")),
        ("HTTP /v1/search (hybrid, loopback)", ("http", "search", "client", "p50_ms")),
    ):
        value = _find(results, path[0], path[0], *path[1:])
        if value and base:
            goal = " (goal <= 1.15x)" if path[0] == "http" else ""
            rows.append(
                Row(
                    f"{label} p50 / plain ST+FAISS{goal}",
                    f"{value / base:.2f}x",
                    f"p50 {value:.1f} ms vs {base:.1f} ms",
                )
            )
    paired = _find(results, "http", "paired", "ratio")
    if paired:
        rows.append(
            Row(
                "HTTP /v1/search p50 / plain ST+FAISS, same minutes (goal <= 1.15x)",
                f"{paired:.2f}x",
                "alternating blocks of 10 requests in one section (section paired)",
            )
        )
    scaling = _find(results, "http", "load", "scaling")
    errors = _find(results, "http", "load", "error_rate")
    if scaling:
        rows.append(
            Row(
                "requests/s, 16 clients / 1 client (goal >= 1.6x, 0 errors)",
                f"{scaling:.2f}x",
                f"error rate under load {errors or 0.0:.1%}",
            )
        )
    rows.extend(_throughput_ratio(results))
    return rows


def _throughput_ratio(results: dict[str, dict[str, Any]]) -> list[Row]:
    default = _part_data(results, "backends", "backends").get("default")
    ratio = _find(results, "backends", "backends", "ratio_to_torch", default) if default else None
    if ratio is None:
        return []
    return [
        Row(
            f"embedding throughput, default settings ({default} here) / torch fp32 (goal >= 1.8x)",
            f"{ratio:.2f}x",
            "interleaved in one process (section backends)",
        )
    ]


def _part_data(results: dict[str, dict[str, Any]], section: str, part_name: str) -> dict[str, Any]:
    """The data of the part named ``part_name`` of ``section``'s results ({} if none)."""
    for part in results.get(section, {}).get("sections", []):
        if part.get("name") == part_name and isinstance(part.get("data"), dict):
            return dict(part["data"])
    return {}


def _find(
    results: dict[str, dict[str, Any]], section: str, part_name: str, *keys: str
) -> float | None:
    """A number in the data of the part named ``part_name`` of ``section``'s results."""
    node: Any = _part_data(results, section, part_name)
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return float(node) if isinstance(node, int | float) else None


def _table(results: dict[str, dict[str, Any]], extra: list[Row]) -> str:
    lines = ["| section | measure | result | notes |", "|---|---|---|---|"]
    for name, payload in results.items():
        for part in payload["sections"]:
            for row in part["rows"]:
                cells = [part["name"], row["measure"], row["value"], row["note"]]
                lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        del name
    for row in extra:
        lines.append(f"| ratios | {row.measure} | {row.value} | {row.note} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        help=f"comma-separated sections of {', '.join(SECTIONS)} (default: all but load, "
        "which http includes)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: try the harness")
    parser.add_argument(
        "--max-build-s",
        type=float,
        help="build ANN indexes whose projected build time is below this (default 180 s; "
        "1200 also builds HNSW over 1M chunks, which takes over 7 minutes here)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args.child, args.out, args.quick)

    names = args.only.split(",") if args.only else list(DEFAULT_SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    # SIGTERM ends the run like Ctrl-C: the running section's process group goes with it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    env = dict(os.environ)
    # Never reach for a model hub: everything runs on the local, converted model.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.max_build_s is not None:
        env["BENCH_MAX_BUILD_S"] = str(args.max_build_s)
    started = time.perf_counter()
    environment = _environment()
    results: dict[str, dict[str, Any]] = {}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for name in names:
        results[name] = _run_section(name, args.quick, env)
        if name == "embeddings" and not results[name].get("failed"):
            continue  # bench_embeddings wrote bench/results/embeddings.json itself
        (RESULTS_DIR / f"{name}.json").write_text(
            json.dumps({"environment": environment, **results[name]}, indent=2, default=float),
            encoding="utf-8",
        )
    total = time.perf_counter() - started
    extra = _add_ratios(results)
    table = _table(results, extra)
    summary = {
        "environment": environment,
        "load_at_end": machine_load(),
        "total_s": total,
        "quick": args.quick,
        "sections": {
            n: {"wall_s": r["wall_s"], "failed": r.get("failed", False)} for n, r in results.items()
        },
        "table": table,
    }
    (RESULTS_DIR / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    start, end = environment, summary["load_at_end"]
    print()
    print(table)
    print()
    print(
        f"Total wall time {total / 60:.1f} min (budget {BUDGET_S // 60} min) on "
        f"{start['cpus']} CPUs; 1-minute load average {start['load1']:.1f} at the start and "
        f"{end['load1']:.1f} at the end (the bench alone keeps about {start['cpus']} busy: "
        "well above that, other processes shared the CPU and the numbers are noisy). "
        "Results: bench/results/*.json."
    )
    failed = [n for n, r in results.items() if r.get("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
