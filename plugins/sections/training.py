"""The report's training section (the TP's section 2): curves of every run, the learning-rate
schedules, final accuracies, and what they say about the terminal phase of training. A run
imported by ``ncood extract`` has no curves: the section says where it came from instead."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

import ncood
from ncood.report.context import STANDARD_WIDTH, AnalyzedRun, ReportContext, ReportSection
from ncood.report.figures import FULL_WIDTH, HALF_WIDTH, integer_ticks, line_style, new_figure
from ncood.report.imported import FILES_SHOWN, imported_facts, shown_files
from ncood.report.latex import escape, num, percent, sci
from ncood.report.seeds import plot_curve

# The terminal phase of training (Papyan et al., 2020) starts when the training error vanishes;
# the train accuracy here is measured on augmented batches, so "vanishes" is read as ≥ 99 %.
TERMINAL_ACCURACY = 0.99


@dataclass
class Curves:
    """One run's history as columns."""

    epochs: list[int]
    lr: list[float]
    train_loss: list[float]
    test_loss: list[float]
    train_acc: list[float]
    test_acc: list[float]
    seconds: float

    @classmethod
    def of(cls, run: AnalyzedRun) -> Curves:
        h = run.history
        return cls(
            [r["epoch"] for r in h],
            [r["lr"] for r in h],
            [r["train_loss"] for r in h],
            [r["test_loss"] for r in h],
            [r["train_acc"] for r in h],
            [r["test_acc"] for r in h],
            float(sum(r.get("seconds", 0.0) for r in h)),
        )

    def terminal_start(self) -> int | None:
        """First epoch from which the train accuracy stays ≥ TERMINAL_ACCURACY, if any."""
        start = None
        for epoch, accuracy in zip(self.epochs, self.train_acc, strict=True):
            start = (start or epoch) if accuracy >= TERMINAL_ACCURACY else None
        return start

    def best_test(self) -> tuple[float, int]:
        index = max(range(len(self.test_acc)), key=self.test_acc.__getitem__)
        return self.test_acc[index], self.epochs[index]


def milestones(run: AnalyzedRun) -> list[int]:
    config = run.manifest["config"]
    return list(config.get("milestones") or []) if config["schedule"] == "multistep" else []


def draw_curves(ctx: ReportContext, run: AnalyzedRun, curves: Curves):
    """The TP's Figure 1 for one run: loss (log scale) and accuracy, train and test."""
    fig, (loss_ax, acc_ax) = new_figure(2, FULL_WIDTH)
    train, test = ctx.text("fig_train"), ctx.text("fig_test")
    plot_curve(loss_ax, curves.epochs, curves.train_loss, color="C0", label=train)
    plot_curve(loss_ax, curves.epochs, curves.test_loss, color="C1", ls="--", label=test)
    plot_curve(acc_ax, curves.epochs, [100 * a for a in curves.train_acc], color="C0", label=train)
    plot_curve(
        acc_ax, curves.epochs, [100 * a for a in curves.test_acc], color="C1", ls="--", label=test
    )
    loss_ax.set(xlabel=ctx.text("fig_epoch"), ylabel=ctx.text("fig_loss"), yscale="log")
    acc_ax.set(xlabel=ctx.text("fig_epoch"), ylabel=ctx.text("fig_accuracy"), ylim=(0, 101))
    start = curves.terminal_start()
    for axis in (loss_ax, acc_ax):
        for epoch in milestones(run):
            axis.axvline(epoch, color="grey", lw=0.8, ls=":")
        if start is not None:
            axis.axvspan(start, curves.epochs[-1], color="grey", alpha=0.12, lw=0)
        axis.grid(alpha=0.3)
        axis.set_xlim(curves.epochs[0], curves.epochs[-1])
        integer_ticks(axis.xaxis)
    loss_ax.set_title(ctx.text("fig_loss_title"))
    acc_ax.set_title(ctx.text("fig_accuracy_title"))
    acc_ax.legend(loc="lower right")
    return ctx.save_figure(fig, f"training-{ctx.run_slug(run)}")


def draw_learning_rates(ctx: ReportContext, runs: list[AnalyzedRun]):
    fig, (axis,) = new_figure(1, HALF_WIDTH)
    for index, run in enumerate(runs):
        curves = Curves.of(run)
        # the rate of epoch e applies from e − 1 to e: a step that starts at 0
        axis.step(
            [0, *curves.epochs],
            [curves.lr[0], *curves.lr],
            where="pre",
            color=f"C{index % 10}",
            ls=line_style(index),
            label=ctx.plain_label(run),
        )
    axis.set(xlabel=ctx.text("fig_epoch"), ylabel=ctx.text("fig_lr"), yscale="log")
    integer_ticks(axis.xaxis)
    axis.grid(alpha=0.3)
    axis.legend()
    return ctx.save_figure(fig, "learning-rate")


def regime(ctx: ReportContext, run: AnalyzedRun) -> object:
    config = run.manifest["config"]
    if config["schedule"] == "multistep":
        return ctx.t(
            "training_regime_multistep",
            label=ctx.label(run),
            epochs=config["epochs"],
            factor=f"{1 / config['gamma']:g}",
            milestones=", ".join(map(str, milestones(run))),
        )
    return ctx.t("training_regime_cosine", label=ctx.label(run), epochs=config["epochs"])


def terminal_sentence(ctx: ReportContext, run: AnalyzedRun, curves: Curves):
    """Did the run reach the terminal phase the TP relies on, and did the loss keep falling?"""
    start = curves.terminal_start()
    if start is None:
        return ctx.t(
            "training_no_terminal",
            label=ctx.label(run),
            best=percent(max(curves.train_acc)),
            threshold=percent(TERMINAL_ACCURACY, 0),
        )
    first = curves.train_loss[curves.epochs.index(start)]
    last = curves.train_loss[-1]
    key = "training_terminal_falls" if last < first else "training_terminal_flat"
    return ctx.t(
        key,
        label=ctx.label(run),
        start=start,
        length=curves.epochs[-1] - start,
        threshold=percent(TERMINAL_ACCURACY, 0),
        first=sci(first),
        last=sci(last),
    )


def comparison_sentence(ctx: ReportContext, runs: list[AnalyzedRun]):
    """The longer regime should reach a lower train loss (deeper into the terminal phase)."""
    by_length = sorted(runs, key=lambda r: len(r.history))
    short, long = by_length[0], by_length[-1]
    if len(long.history) == len(short.history):
        return None
    short_loss, long_loss = short.history[-1]["train_loss"], long.history[-1]["train_loss"]
    key = "training_longer_lower" if long_loss < short_loss else "training_longer_not_lower"
    return ctx.t(
        key,
        long=ctx.label(long),
        short=ctx.label(short),
        long_loss=sci(long_loss),
        short_loss=sci(short_loss),
        long_test=percent(long.history[-1]["test_acc"]),
        short_test=percent(short.history[-1]["test_acc"]),
    )


def caption(ctx: ReportContext, run: AnalyzedRun, curves: Curves):
    parts = [ctx.t("training_curves_caption", label=ctx.label(run))]
    if milestones(run):
        parts.append(
            ctx.t("training_curves_milestones", milestones=", ".join(map(str, milestones(run))))
        )
    if curves.terminal_start() is not None:
        parts.append(
            ctx.t(
                "training_curves_terminal",
                start=curves.terminal_start(),
                threshold=percent(TERMINAL_ACCURACY, 0),
            )
        )
    return Markup(" ").join(parts)


def model_text(ctx: ReportContext, run: AnalyzedRun) -> list:
    """The architecture as the manifest records it, and how it departs from the TP's."""
    model = run.manifest.get("model", {})
    name = model.get("name", "?")
    key = f"training_model_{name}"
    texts = [ctx.t(key) if ctx.has(key) else ctx.t("training_model_other", model=name)]
    width = model.get("width")
    if width is not None and width != STANDARD_WIDTH:
        texts.append(
            ctx.t(
                "training_width",
                width=width,
                standard=STANDARD_WIDTH,
                dim=model.get("feature_dim", "?"),
            )
        )
    return texts


def augmentation_text(ctx: ReportContext, config: dict):
    padding, flip = config.get("crop_padding", 0), config.get("flip", False)
    if padding and flip:
        return ctx.t("training_augment_both", padding=padding)
    if padding:
        return ctx.t("training_augment_crop", padding=padding)
    if flip:
        return ctx.t("training_augment_flip")
    return ctx.t("training_augment_none")


def figure_ref(name: str) -> Markup:
    return Markup(rf"\ref{{fig:{name}}}")


def _values(ctx: ReportContext, values: list[float] | None) -> Markup:
    """A per-channel mean or std: one number when the channels agree (grey images)."""
    if not values:
        return Markup("--")
    shown = values[:1] if len(set(values)) == 1 else values
    return (
        Markup("(")
        + Markup("; " if ctx.lang == "fr" else ", ").join(num(v, 4) for v in shown)
        + Markup(")")
    )


def _files_text(ctx: ReportContext, facts) -> Markup:
    if facts.first_sha:
        return ctx.t("training_imported_sha", file=facts.files[0], sha=facts.first_sha)
    if len(facts.files) > FILES_SHOWN:
        first, last = shown_files(facts.files)
        return ctx.t("training_imported_files_many", count=len(facts.files), first=first, last=last)
    return ctx.enumeration(facts.files) if facts.files else Markup("--")


def _features_text(ctx: ReportContext, where: str) -> Markup:
    side, _, layer = where.partition(" of ")
    key = {"input": "training_imported_input", "output": "training_imported_output"}.get(side)
    return ctx.t(key, layer=layer) if key and layer else escape(where)


def _preprocessing_text(ctx: ReportContext, facts) -> Markup:
    if facts.normalize is None:
        return ctx.t("training_imported_prep_caller")
    mean, std = _values(ctx, facts.mean), _values(ctx, facts.std)
    if facts.crop and not facts.image_size:
        return ctx.t(
            "training_imported_prep_files", resize=facts.resize, crop=facts.crop, mean=mean, std=std
        )
    if facts.image_size:
        return ctx.t("training_imported_prep_resized", size=facts.image_size, mean=mean, std=std)
    return ctx.t("training_imported_prep_native", mean=mean, std=std)


def imported_run(ctx: ReportContext, run: AnalyzedRun) -> dict:
    """Where an imported model came from and its accuracies: what replaces its curves."""
    facts = imported_facts(run.manifest)
    origin = ctx.t(
        "training_imported_origin",
        label=ctx.label(run),
        arch=facts.arch,
        cls=facts.python_class,
        params=num(facts.parameters) if facts.parameters is not None else "?",
        files=_files_text(ctx, facts),
        features=_features_text(ctx, facts.features),
        prep=_preprocessing_text(ctx, facts),
    )
    sentences = [origin]
    if facts.epochs:
        sentences.append(
            ctx.t(
                "training_imported_accuracy",
                epoch=facts.epochs[-1],
                train=percent(facts.train_acc),
                test=percent(facts.test_acc),
            )
        )
    if facts.first_test_acc is not None:
        sentences.append(
            ctx.t(
                "training_imported_progress",
                count=len(facts.epochs),
                first=facts.epochs[0],
                last=facts.epochs[-1],
                first_test=percent(facts.first_test_acc),
                test=percent(facts.test_acc),
            )
        )
    return {
        "label": ctx.label(run),
        "arch": facts.arch,
        "checkpoints": len(facts.epochs),
        "train": facts.train_acc,
        "test": facts.test_acc,
        "text": Markup(" ").join(sentences),
    }


def build(ctx: ReportContext) -> dict | None:
    imported = [imported_run(ctx, r) for r in ctx.runs if r.imported]
    runs = [r for r in ctx.runs if r.history]
    if not runs:
        return (
            {"trained": False, "imported": imported, "dataset": ctx.id_short()}
            if imported
            else None
        )
    ctx.define_terms("terminal", threshold=num(TERMINAL_ACCURACY, 2))
    config = runs[0].manifest["config"]
    per_run = []
    for run in runs:
        curves = Curves.of(run)
        best, best_epoch = curves.best_test()
        cfg = run.manifest["config"]
        schedule_key = f"schedule_{cfg['schedule']}"
        per_run.append(
            {
                "label": ctx.label(run),
                "slug": ctx.run_slug(run),
                "figure": draw_curves(ctx, run, curves),
                "caption": caption(ctx, run, curves),
                "epochs": cfg["epochs"],
                "schedule": ctx.t(schedule_key) if ctx.has(schedule_key) else cfg["schedule"],
                "train": curves.train_acc[-1],
                "test": curves.test_acc[-1],
                "best": best,
                "best_epoch": best_epoch,
                "train_loss": curves.train_loss[-1],
                "seconds": curves.seconds,
                "summary": ctx.t(
                    "training_summary",
                    label=ctx.label(run),
                    train=percent(curves.train_acc[-1]),
                    test=percent(curves.test_acc[-1]),
                    best=percent(best),
                    best_epoch=best_epoch,
                    gap=num(100 * (curves.train_acc[-1] - curves.test_acc[-1]), 1),
                ),
                "terminal_sentence": terminal_sentence(ctx, run, curves),
            }
        )
    refs = [figure_ref(f"training-{r['slug']}") for r in per_run]
    figures_text = ctx.t(
        "training_figures_text_one" if len(refs) == 1 else "training_figures_text_many",
        refs=ctx.enumeration(refs),
        lr=figure_ref("learning-rate"),
        table=Markup(r"\ref{tab:accuracy}"),
    )
    texts = model_text(ctx, runs[0])
    return {
        "trained": True,
        "imported": imported,
        "dataset": ctx.id_short(),
        "model": texts[0],
        "width_note": texts[1] if len(texts) > 1 else None,
        "augmentation": augmentation_text(ctx, config),
        "loss": loss_text(ctx, runs),
        "lr": sci(config["lr"]),
        "momentum": sci(config["momentum"]),
        "wd": sci(config["weight_decay"]),
        "batch": config["batch_size"],
        "regimes": [regime(ctx, run) for run in runs],
        "figures_text": figures_text,
        "runs": per_run,
        "comparison": comparison_sentence(ctx, runs) if len(runs) > 1 else None,
        "learning_rate": draw_learning_rates(ctx, runs),
    }


def loss_text(ctx: ReportContext, runs: list[AnalyzedRun]) -> Markup:
    """The training loss in words: the runs' one loss, or a pointer when they differ."""
    configs = [run.manifest.get("config") or {} for run in runs]
    losses = {(c.get("loss", "ce"), c.get("logitnorm_tau")) for c in configs}
    if len(losses) > 1:
        return ctx.t("training_loss_mixed")
    loss, tau = losses.pop()
    if loss == "logitnorm":
        return ctx.t("training_loss_logitnorm", tau=num(float(tau), 3))
    return ctx.t("training_loss_ce")


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("training", 20, "sections/training.tex.j2", build))
