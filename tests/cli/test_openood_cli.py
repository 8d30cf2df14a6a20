"""``--benchmark openood:ID`` end to end on a generated folder in OpenOOD's layout: a CIFAR-100
training reads OpenOOD's lists, records the benchmark, and ``ncood analyze RUN`` then reports
its near and far groups and tunes on its validation set; the refusals are one line each."""

from __future__ import annotations

import json

import pytest
from cli_helpers import one_line_error, runner
from openood_layout import cifar_tree

from ncood.cli import app
from ncood.store.run import RunDir

NEAR, FAR = ["cifar10", "tin"], ["mnist", "svhn", "textures", "places365"]


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("openood")
    data = cifar_tree(root / "data", "cifar100")
    args = ["train", "--preset", "demo-standard", "--benchmark", "openood:cifar100"]
    args += ["--data-dir", str(data), "--out", str(root / "run"), "--width", "4"]
    args += ["--epochs", "2", "--checkpoint-every", "2", "--device", "cpu", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return root / "run"


def analyze_json(run, *args):
    result = runner.invoke(
        app, ["analyze", str(run), "--bootstrap", "0", "--quiet", "--json", *args]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_training_on_the_cifar100_benchmark_records_it(benchmark_run):
    manifest = RunDir.open(benchmark_run).manifest()
    config, dataset = manifest["config"], manifest["dataset"]
    assert (config["benchmark"], config["dataset"]) == ("openood:cifar100", "cifar100")
    assert config["ood"] == [*NEAR, *FAR, "val_tin"]
    assert dataset["benchmark"] == {
        "name": "openood:cifar100",
        "groups": {"near": NEAR, "far": FAR},
        "validation": "val_tin",
    }
    assert (dataset["num_classes"], dataset["train_size"], dataset["test_size"]) == (100, 12, 12)
    assert dataset["ood"] == {**{s: 3 for s in NEAR + FAR}, "val_tin": 4}
    assert dataset["mean"] == pytest.approx([0.5071, 0.4867, 0.4408])


def test_analyze_reports_openoods_groups_without_the_validation_set(benchmark_run):
    results = analyze_json(benchmark_run, "--plugins", "msp,energy")
    assert list(results["ood"]) == [*NEAR, *FAR]  # val_tin is not a test set
    groups = results["ood_groups"]
    assert {name: g["sets"] for name, g in groups.items()} == {"near": NEAR, "far": FAR}
    mean = sum(results["ood"][s]["msp"]["auroc"] for s in NEAR) / 2
    assert groups["near"]["scorers"]["msp"]["auroc"] == pytest.approx(mean, abs=1e-12)
    # --ood given: the user's groups, not the benchmark's
    chosen = analyze_json(benchmark_run, "--plugins", "msp", "--ood", "near:tin far:svhn")
    assert {n: g["sets"] for n, g in chosen["ood_groups"].items()} == {
        "near": ["tin"],
        "far": ["svhn"],
    }


def test_tune_uses_the_benchmarks_validation_set(benchmark_run):
    args = ["--plugins", "knn", "--tune", "knn.k=1,2", "--tune-fraction", "0.34"]
    results = analyze_json(benchmark_run, *args)
    assert results["tuning"]["ood"] == "val_tin"
    assert results["tuning"]["validation"]["ood_size"] == 4
    assert "val_tin" not in results["ood"]


def test_model_based_scorers_reload_the_benchmarks_files(benchmark_run):
    results = analyze_json(benchmark_run, "--plugins", "odin", "--device", "cpu")
    assert set(results["ood"]) == set(NEAR + FAR)
    assert 0 <= results["ood"]["tin"]["odin"]["auroc"] <= 1


def test_train_refuses_imagenet_and_sets_given_with_a_benchmark(tmp_path):
    base = ["train", "--preset", "demo-standard", "--out", str(tmp_path / "r"), "--dry-run"]
    result = runner.invoke(app, [*base, "--benchmark", "openood:imagenet1k"])
    one_line_error(result, "ncood train trains on 32-px images", "ncood extract")
    result = runner.invoke(app, [*base, "--benchmark", "openood:cifar10", "--ood", "svhn"])
    one_line_error(result, "--benchmark openood:cifar10 sets the in-distribution", "drop --ood")
    dry = runner.invoke(app, [*base, "--benchmark", "openood:cifar10"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["ood"][-1] == "val_tin"


def test_extract_says_which_list_is_missing_and_where(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not read before the data")
    args = ["extract", "--model", "resnet18-cifar", "--weights", str(weights), "--quiet"]
    args += ["--benchmark", "openood:cifar10", "--data-dir", str(tmp_path / "data")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])
    expected = tmp_path / "data/benchmark_imglist/cifar10/train_cifar10.txt"
    one_line_error(
        result, "benchmark_imglist/cifar10/train_cifar10.txt", str(expected), "download.py"
    )
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r2"), "--dataset", "digits"])
    one_line_error(result, "drop --dataset")


def test_help_shows_the_benchmark_option():
    for command in ("train", "extract"):
        assert "--benchmark openood:ID" in runner.invoke(app, [command, "--help"]).output
    assert "--benchmark run's near and far groups" in " ".join(
        runner.invoke(app, ["analyze", "--help"]).output.split()
    )


def test_an_imported_runs_benchmark_gives_the_same_defaults():
    """What ``ncood extract --benchmark`` records (ImportPlan's ``dataset``) gives ``analyze``
    OpenOOD's ImageNet groups; what the user gives wins; a run without a benchmark is left."""
    from ncood.analyze.options import AnalyzeOptions
    from ncood.datasets.openood import benchmark_record
    from ncood.extraction.named import ExtractRequest, _with_benchmark
    from ncood.ood.groups import parse_ood

    request = _with_benchmark(
        ExtractRequest(model="m", weights=[], out="r", benchmark="openood:imagenet1k")
    )
    assert (request.dataset, request.ood[-1]) == ("imagenet1k", "val_openimage_o")
    manifest = {"dataset": {"name": "imagenet1k", **benchmark_record(request.benchmark)}}
    options = AnalyzeOptions(tune={"knn": {"k": ["1", "2"]}}).with_benchmark(manifest)
    assert options.test_sets.groups == {
        "near": ["ssb_hard", "ninco"],
        "far": ["inaturalist", "textures", "openimage_o"],
    }
    assert options.test_sets.sets == ["ssb_hard", "ninco", "inaturalist", "textures", "openimage_o"]
    assert options.tune_on == "val_openimage_o"
    assert AnalyzeOptions().with_benchmark(manifest).tune_on is None  # no --tune, no --tune-on
    given = AnalyzeOptions(test_sets=parse_ood(["far:ninco"]), tune_on="x", tune={"k": {}})
    assert given.with_benchmark(manifest) == given
    plain = AnalyzeOptions()
    assert plain.with_benchmark({"dataset": {"name": "cifar10"}}) is plain
