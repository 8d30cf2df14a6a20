"""Speed of the report stage (figures + LaTeX) on analyzed runs, against the 30 s budget.

    .venv/bin/python benchmarks/bench_report.py RUN_DIR [RUN_DIR ...] [--repeats 3]

With no run given it trains and analyses the two demo presets into a temporary folder first
(minutes; not timed). Then, for French and English:

1. the whole command ``ncood report RUNS --lang L`` as a fresh process (imports included),
   cold (the first report after ``ncood analyze``: the t-SNE maps the NC section caches in
   each run are removed first) and warm (caches present);
2. in this process, the two halves: sections + figures + .tex (``build_report(pdf=False)``),
   and the LaTeX compilation of that .tex with a cold build folder (latexmk, all passes);
3. a baseline in the same process: the same preamble with an empty body, compiled the same way,
   i.e. the fixed cost of starting TeX and loading the packages.

The runs are copied into a temporary folder first, so removing caches never touches yours. It
prints the medians, the ratio of the whole command to the 30 s budget, and the ratio of the
document's compilation to the empty one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NCOOD_LOAD_PLUGINS", "")  # built-ins only, whatever else is installed

from ncood.report.build import build_report, core_templates  # noqa: E402
from ncood.report.compile import compile_pdf, latexmk_available  # noqa: E402
from ncood.report.context import load_strings  # noqa: E402
from ncood.report.latex import environment  # noqa: E402

BUDGET_S = 30.0
NCOOD = [sys.executable, "-m", "ncood"]


def demo_runs(folder: Path) -> list[Path]:
    runs = []
    for preset in ("demo-standard", "demo-extended"):
        run = folder / preset
        for args in (
            ["train", "--preset", preset, "--out", str(run), "--quiet"],
            ["analyze", str(run), "--epoch", "all", "--quiet"],
        ):
            subprocess.run([*NCOOD, *args], check=True, stdout=subprocess.DEVNULL)
        runs.append(run)
    return runs


def seconds(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


def empty_document(folder: Path, lang: str) -> Path:
    """The report's preamble around an empty body: what TeX costs before any content."""
    strings = load_strings(lang, [core_templates()])
    tex = folder / f"empty-{lang}.tex"
    text = (
        environment([core_templates()])
        .get_template("report.tex.j2")
        .render(
            t=lambda key, **values: strings[key].replace("<version>", "0"), body="", version="0"
        )
    )
    tex.write_text(text, encoding="utf-8")
    return tex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not latexmk_available():
        sys.exit("latexmk is not installed: the benchmark needs TeX")
    work = Path(tempfile.mkdtemp(prefix="ncood-bench-report-"))
    try:
        runs = []
        for source in args.runs or demo_runs(work / "trained"):
            runs.append(work / "runs" / source.name)
            shutil.copytree(source, runs[-1])
        print(f"runs: {', '.join(str(r) for r in runs)}; {args.repeats} repeats, medians")
        for lang in ("fr", "en"):
            out = work / f"out-{lang}"
            command = [*NCOOD, "report", *map(str, runs), "--lang", lang, "--out", str(out)]
            cold, whole, source, latex, empty = [], [], [], [], []
            for repeat in range(args.repeats):
                shutil.rmtree(out, ignore_errors=True)
                for run in runs:
                    for cache in run.glob("analysis/*/tsne.safetensors"):
                        cache.unlink()
                cold.append(seconds(subprocess.run, command, check=True, capture_output=True)[0])
                whole.append(seconds(subprocess.run, command, check=True, capture_output=True)[0])
                took, result = seconds(build_report, runs, lang=lang, out_dir=out, pdf=False)
                source.append(took)
                latex.append(
                    seconds(
                        compile_pdf, result.tex, out / f"cold-{repeat}.pdf", inputs=result.figures
                    )[0]
                )
                blank = empty_document(out, lang)
                empty.append(seconds(compile_pdf, blank, out / f"empty-{repeat}.pdf")[0])
            med = {
                k: statistics.median(v)
                for k, v in (
                    ("cold", cold),
                    ("whole", whole),
                    ("source", source),
                    ("latex", latex),
                    ("empty", empty),
                )
            }
            pages = subprocess.run(
                ["pdfinfo", str(out / f"ncood-report-{lang}.pdf")], capture_output=True, text=True
            ).stdout
            count = next(
                (ln.split()[-1] for ln in pages.splitlines() if ln.startswith("Pages")), "?"
            )
            print(
                f"[{lang}] ncood report (fresh process), cold: {med['cold']:.1f} s "
                f"= {med['cold'] / BUDGET_S:.2f} × the {BUDGET_S:.0f} s budget; warm: "
                f"{med['whole']:.1f} s = {med['whole'] / BUDGET_S:.2f} ×; {count} pages\n"
                f"     sections + figures + .tex: {med['source']:.1f} s; "
                f"LaTeX (cold, all passes): {med['latex']:.1f} s; "
                f"baseline empty document: {med['empty']:.1f} s "
                f"(document / empty = {med['latex'] / med['empty']:.1f})"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
