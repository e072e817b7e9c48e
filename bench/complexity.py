"""How well the complexity estimators route the held-out evaluation set, and what they cost.

Reads ``bench/complexity/prompts.jsonl`` (written by ``make_prompts.py``; labels by the
rule in ``LABELLING.md``) and, on its held-out part, scores three estimators in the same
run, over three tiers (1 = 4B, 2 = 7B, 3 = 14B):

- **today**: the first estimator (``bench/complexity/legacy.py``, a verbatim copy of the
  sidecar's ``complexity.py`` before issue 14) with the score split evenly into tiers;
- **signals re-weighed**: the same kind of signals, weights and thresholds fitted on the
  tuning part (``signals_only.json``, by ``train.py``);
- **built-in**: the shipped model (words and signals), its fitted default thresholds.

For each: the confusion matrix, accuracy, under-routing (a request sent below its label:
the costly error), over-routing (above it: wasted compute), and which tier the hard
(label 3) requests reach. CPU per estimate: per request over the held-out bodies (and the
longest one), timed in rounds back to back with ``json.loads`` of the same bodies (the
machine is shared: the ratio within a round is the figure to compare across runs). Prints a markdown
report and writes it to ``bench/results/complexity.md``. Bounded: a few seconds, no I/O
beyond reading the set and writing the report.

    .venv/bin/python bench/complexity.py
"""

import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from zeta_sidecar.complexity import Model, default_thresholds, score, tier_index

HERE = Path(__file__).parent
SET = HERE / "complexity" / "prompts.jsonl"
OUT = HERE / "results" / "complexity.md"
REPEATS = 21
TIERS = 3

Estimator = Callable[[Mapping[str, object]], int]


def _legacy() -> Any:
    spec = importlib.util.spec_from_file_location(
        "complexity_legacy", HERE / "complexity" / "legacy.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def estimators() -> dict[str, Estimator]:
    legacy = _legacy()
    raw = json.loads((HERE / "complexity" / "signals_only.json").read_text())
    signals = Model(
        raw["words"], tuple(raw["signal_weights"]), raw["bias"], tuple(raw["thresholds"])
    )
    built_in = default_thresholds(TIERS)

    def today(body: Mapping[str, object]) -> int:
        return int(legacy.tier_index(legacy.estimate(body).score, TIERS)) + 1

    def reweighed(body: Mapping[str, object]) -> int:
        return tier_index(score(body, signals), TIERS, signals.thresholds) + 1

    def new(body: Mapping[str, object]) -> int:
        return tier_index(score(body), TIERS, built_in) + 1

    return {"today": today, "signals re-weighed": reweighed, "built-in": new}


def quality(rows: list[dict[str, Any]], est: Estimator) -> dict[str, Any]:
    matrix = [[0] * TIERS for _ in range(TIERS)]
    for row in rows:
        matrix[row["label"] - 1][est(row["body"]) - 1] += 1
    n = len(rows)
    right = sum(matrix[i][i] for i in range(TIERS))
    under = sum(matrix[i][j] for i in range(TIERS) for j in range(i))
    over = sum(matrix[i][j] for i in range(TIERS) for j in range(i + 1, TIERS))
    return {"matrix": matrix, "n": n, "accuracy": right / n, "under": under / n, "over": over / n}


def per_category(rows: list[dict[str, Any]], est: Estimator) -> dict[str, tuple[int, int, int]]:
    """Per category: (requests, routed right, routed under)."""
    out: dict[str, list[int]] = {}
    for row in rows:
        got = est(row["body"])
        cell = out.setdefault(row["category"], [0, 0, 0])
        cell[0] += 1
        cell[1] += got == row["label"]
        cell[2] += got < row["label"]
    return {k: (v[0], v[1], v[2]) for k, v in sorted(out.items())}


def _pass(inputs: list[Any], fn: Callable[[Any], object]) -> float:
    """CPU microseconds per call, one pass over ``inputs``: this process's CPU time, so
    the time spent waiting for a core on a shared machine is not counted."""
    start = time.process_time()
    for item in inputs:
        fn(item)
    return (time.process_time() - start) / len(inputs) * 1e6


def costs(
    inputs: list[Mapping[str, object]], ests: dict[str, Estimator]
) -> dict[str, tuple[float, float, float]]:
    """Per estimator and the ``json.loads`` baseline: (median µs, best µs, median ratio).

    Each round times the baseline and every estimator back to back, so a burst of load
    from other processes weighs on all of them alike; the ratio is taken per round."""
    raws = [json.dumps(b).encode() for b in inputs]
    runs: dict[str, list[float]] = {"json.loads": [], **{name: [] for name in ests}}
    ratios: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(REPEATS):
        base = _pass(raws, json.loads)
        runs["json.loads"].append(base)
        ratios["json.loads"].append(1.0)
        for name, est in ests.items():
            t = _pass(inputs, est)
            runs[name].append(t)
            ratios[name].append(t / base)
    return {
        name: (statistics.median(t), min(t), statistics.median(ratios[name]))
        for name, t in runs.items()
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def report(rows: list[dict[str, Any]]) -> str:
    held = [r for r in rows if r["split"] == "heldout"]
    tune = [r for r in rows if r["split"] == "tune"]
    ests = estimators()
    out = [
        "# Complexity routing: held-out evaluation",
        "",
        f"Set: `bench/complexity/prompts.jsonl`, {len(rows)} requests, {len(held)} held out "
        f"(never tuned on), {len(tune)} for tuning. Labels: the smallest tier expected to "
        "answer well (1 = 4B, 2 = 7B, 3 = 14B), by the rule in `bench/complexity/LABELLING.md`. "
        "Under-routing: sent below the label (a likely wrong answer); over-routing: above it "
        "(wasted compute). Three candidates, no `max_tokens` tuning: each request as written.",
        "",
        "| estimator | accuracy | under-routing | over-routing | tune-part accuracy |",
        "|---|---|---|---|---|",
    ]
    results = {}
    for name, est in ests.items():
        q = quality(held, est)
        t = quality(tune, est)
        results[name] = q
        out.append(
            f"| {name} | {_pct(q['accuracy'])} | {_pct(q['under'])} | {_pct(q['over'])} "
            f"| {_pct(t['accuracy'])} |"
        )
    out += [
        "",
        "Acceptance (held-out): under-routing at most 5%, accuracy at least 85%.",
        "",
        "Reading these figures: the set is the project's own, written from templates "
        "(`make_prompts.py`). Held-out requests are other draws of the same families as the "
        "tuning ones, so the built-in model's held-out figures say how well it learnt *these* "
        "kinds of request; on traffic unlike them expect less (its tune-part accuracy, near "
        "100%, shows how much it can memorise). Today's estimator was not fitted to the set "
        "at all. Thresholds were chosen for at most 3% under-routing on out-of-fold scores of "
        "the tuning part, trading over-routing for it. Per virtual model, `thresholds` in the "
        "ZetaRouter moves that trade: lower thresholds route up more.",
        "",
    ]
    for name, q in results.items():
        out += [
            f"## Confusion matrix: {name} (rows: label, columns: tier routed to)",
            "",
            "| label \\ routed | 1 | 2 | 3 | requests |",
            "|---|---|---|---|---|",
        ]
        for i, line in enumerate(q["matrix"]):
            out.append(f"| {i + 1} | " + " | ".join(map(str, line)) + f" | {sum(line)} |")
        hard = q["matrix"][2]
        share = ", ".join(
            f"tier {j + 1}: {_pct(c / max(1, sum(hard)))}" for j, c in enumerate(hard)
        )
        out += ["", f"Hard (label 3) requests served by: {share}.", ""]
    out += [
        "## Per category (held-out): routed right / under-routed, of requests",
        "",
        "| category | requests | " + " | ".join(ests) + " |",
        "|---|---|" + "---|" * len(ests),
    ]
    cats = {name: per_category(held, est) for name, est in ests.items()}
    for cat in cats["today"]:
        n = cats["today"][cat][0]
        cells = [f"{cats[name][cat][1]} / {cats[name][cat][2]}" for name in ests]
        out.append(f"| {cat} | {n} | " + " | ".join(cells) + " |")
    bodies = [r["body"] for r in held]
    longest = max(bodies, key=lambda b: len(json.dumps(b)))
    every = costs(bodies, ests)
    long = costs([longest] * 200, ests)
    load = os.getloadavg()[0]
    out += [
        "",
        "## CPU per estimate",
        "",
        f"CPU time per request (`time.process_time`: waiting for a core is not counted), "
        f"over the {len(bodies)} held-out bodies and over the longest one "
        f"({len(json.dumps(longest))} bytes of JSON), {REPEATS} rounds; in each round the "
        "baseline (`json.loads` of the same bodies' bytes, which the sidecar does anyway) and "
        "every estimator are timed back to back, and the ratio is taken within the round. "
        f"Median and best round. Load average when measured: {load:.1f} "
        f"on {os.cpu_count()} CPUs (a shared machine: the ratio is the figure to compare).",
        "",
        "| estimator | µs median | µs best | ratio to json.loads "
        "| longest: µs median | µs best | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in every:
        m, b, r = every[name]
        lm, lb, lr = long[name]
        out.append(f"| {name} | {m:.2f} | {b:.2f} | {r:.2f} | {lm:.2f} | {lb:.2f} | {lr:.2f} |")
    out += [
        "",
        f"Python {sys.version.split()[0]}. Each figure includes the tier lookup. Budget: "
        "under 20 µs per request for the built-in estimator.",
        "",
    ]
    return "\n".join(out)


def main() -> None:
    rows = [json.loads(line) for line in SET.read_text(encoding="utf-8").splitlines()]
    text = report(rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
