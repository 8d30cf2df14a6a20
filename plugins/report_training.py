"""The report's training section: curves of every run and their final accuracies."""

from __future__ import annotations

from ncood_plugins.report_core import dataset_name

import ncood
from ncood.report.context import ReportContext, ReportSection
from ncood.report.figures import new_figure, save
from ncood.report.latex import percent, sci


def draw_curves(ctx: ReportContext):
    fig, (loss_ax, acc_ax) = new_figure(2)
    for index, run in enumerate(ctx.runs):
        color = f"C{index}"
        epochs = [h["epoch"] for h in run.history]
        label = f"{run.preset}"
        loss_ax.plot(
            epochs, [h["train_loss"] for h in run.history], color=color, label=f"{label} train"
        )
        loss_ax.plot(
            epochs,
            [h["test_loss"] for h in run.history],
            color=color,
            ls="--",
            label=f"{label} test",
        )
        acc_ax.plot(
            epochs, [h["train_acc"] for h in run.history], color=color, label=f"{label} train"
        )
        acc_ax.plot(
            epochs,
            [h["test_acc"] for h in run.history],
            color=color,
            ls="--",
            label=f"{label} test",
        )
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), title="accuracy")
    for axis in (loss_ax, acc_ax):
        axis.grid(alpha=0.3)
    acc_ax.legend(fontsize=7, loc="lower right")
    return save(fig, ctx.figure("training-curves"))


def build(ctx: ReportContext) -> dict | None:
    runs = [r for r in ctx.runs if r.history]
    if not runs:
        return None
    config = runs[0].manifest["config"]
    regimes, rows, summaries = [], [], []
    for run in runs:
        cfg, last = run.manifest["config"], run.history[-1]
        label = ctx.label(run)
        if cfg["schedule"] == "multistep":
            regimes.append(
                ctx.t(
                    "training_regime_multistep",
                    label=label,
                    epochs=cfg["epochs"],
                    factor=f"{1 / cfg['gamma']:g}",
                    milestones=", ".join(map(str, cfg["milestones"])),
                )
            )
        else:
            regimes.append(ctx.t("training_regime_cosine", label=label, epochs=cfg["epochs"]))
        rows.append(
            {
                "label": label,
                "epochs": cfg["epochs"],
                "schedule": cfg["schedule"],
                "train": last["train_acc"],
                "test": last["test_acc"],
            }
        )
        summaries.append(
            ctx.t(
                "training_summary",
                label=label,
                train=percent(last["train_acc"]),
                test=percent(last["test_acc"]),
            )
        )
    return {
        "dataset": dataset_name(ctx),
        "lr": sci(config["lr"]),
        "momentum": sci(config["momentum"]),
        "wd": sci(config["weight_decay"]),
        "regimes": regimes,
        "rows": rows,
        "summaries": summaries,
        "curves": ctx.relative(draw_curves(ctx)),
    }


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("training", 20, "sections/training.tex.j2", build))
