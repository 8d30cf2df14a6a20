"""A run folder never chooses which code runs.

An imported run's manifest names its architecture and arguments; a model-based scorer
(``ncood analyze RUN --plugins odin``) rebuilds the network from them. Each test below edits
a copy of a real imported run the way someone handing it over could, plants code that would
write a marker file, and checks that the analysis is refused in one line with nothing run:
a local torch hub directory, ``runpy``, ``subprocess``, ``builtins``, a module dropped in the
run folder or in the current directory, a timm argument naming a file. A
``package.module:callable`` runs only when the user names it again (``--model``). Nor does the
folder the run is analyzed from choose which weights load: the weights file an imported run
records is found the same from any folder.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
from cli_helpers import runner
from hostile_helpers import one_line_error

from ncood.cli import app
from ncood.store.run import RunDir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


EXTRACT = ["--dataset", "digits", "--ood", "noise", "--image-size", "16", "--limit", "40"]


def write_weights(path: Path) -> Path:
    from ncood.engine.resnet import ResNet18

    torch.manual_seed(3)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ResNet18(10, width=4).state_dict(), path)
    return path


def extract(out: Path, weights: str | Path, *model: str):
    args = ["extract", "--model", *model, "--weights", str(weights), *EXTRACT]
    return runner.invoke(app, [*args, "--out", str(out), "--quiet"])


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imported")
    weights = write_weights(root / "epoch_1.pth")
    result = extract(root / "run", weights, "resnet18-cifar", "--model-arg", "width=4")
    assert result.exit_code == 0, result.output
    return root / "run"


def analyze(run: Path, *args: str):
    return runner.invoke(app, ["analyze", str(run), "--plugins", "odin", "--quiet", *args])


def analyzed_by_odin(run: Path) -> bool:
    opened = RunDir.open(run)
    results = json.loads(opened.results(opened.feature_epochs()[-1]).read_text())
    return "odin" not in results["errors"] and all("odin" in s for s in results["ood"].values())


def edit_model(run: Path, name: str, arguments: dict) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["model"]["name"] = name
    manifest["model"]["arguments"] = arguments
    (run / "manifest.json").write_text(json.dumps(manifest))


def payload(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')\n"


# Each vector: the name a hostile manifest records, its arguments (given the run folder and the
# marker), and the files it plants: {path relative to "run" or "cwd": text}.
VECTORS = {
    "torch-hub-local-dir": (
        "torch.hub:load",
        lambda run, marker: {"repo_or_dir": str(run), "model": "evil", "source": "local"},
        lambda marker: {
            "run/hubconf.py": payload(marker) + "def evil(**kwargs):\n    return None\n"
        },
    ),
    "runpy": (
        "runpy:run_path",
        lambda run, marker: {"path_name": str(run / "evil.py")},
        lambda marker: {"run/evil.py": payload(marker)},
    ),
    "subprocess-run": (
        "subprocess:run",
        lambda run, marker: {"args": [sys.executable, str(run / "evil.py")]},
        lambda marker: {"run/evil.py": payload(marker)},
    ),
    "subprocess-popen": (
        "subprocess:Popen",
        lambda run, marker: {"args": [sys.executable, str(run / "evil.py")]},
        lambda marker: {"run/evil.py": payload(marker)},
    ),
    "builtins-exec": (
        "builtins:exec",
        lambda run, marker: {"source": payload(marker)},
        lambda marker: {},
    ),
    "builtins-eval": (
        "builtins:eval",
        lambda run, marker: {"source": payload(marker).strip()},
        lambda marker: {},
    ),
    "module-in-the-run-folder": (
        "ncood_test_evil_in_run:build",
        lambda run, marker: {},
        lambda marker: {"run/ncood_test_evil_in_run.py": payload(marker)},
    ),
    "module-in-the-current-directory": (
        "ncood_test_evil_in_cwd:build",
        lambda run, marker: {},
        lambda marker: {"cwd/ncood_test_evil_in_cwd.py": payload(marker)},
    ),
}


@pytest.fixture
def hostile(imported, tmp_path, monkeypatch):
    """``plant(vector)``: a copy of the imported run edited as ``vector`` says, with its files
    planted, the run folder and the current directory on sys.path (where ``python -m ncood``
    run from either would put them); returns (run, marker, recorded name, arguments)."""

    def plant(vector: str):
        name, arguments, files = VECTORS[vector]
        run, cwd, marker = tmp_path / "run", tmp_path / "cwd", tmp_path / "MARKER"
        shutil.copytree(imported, run, ignore=shutil.ignore_patterns("analysis"))
        cwd.mkdir()
        for where, text in files(marker).items():
            (tmp_path / where).write_text(text)
        edit_model(run, name, arguments(run, marker))
        monkeypatch.chdir(cwd)
        monkeypatch.syspath_prepend(str(run))
        monkeypatch.syspath_prepend("")  # the current directory, as `python -m` puts it
        return run, marker, name, arguments(run, marker)

    yield plant
    for module in ("ncood_test_evil_in_run", "ncood_test_evil_in_cwd"):
        sys.modules.pop(module, None)  # the controls import them


@pytest.mark.parametrize("vector", sorted(VECTORS))
def test_the_planted_code_runs_when_called_directly(vector, hostile):
    """The control: each planted payload is live, so the refusals below are what stops it."""
    run, marker, name, arguments = hostile(vector)
    module_name, _, attribute = name.partition(":")
    target = getattr(importlib.import_module(module_name), attribute, None)
    if not marker.exists():  # a module that acts when called, not when imported
        positional = module_name == "builtins"  # exec and eval take no keywords
        process = target(*arguments.values()) if positional else target(**arguments)
        if hasattr(process, "wait"):
            process.wait()
    assert marker.exists()


@pytest.mark.parametrize("vector", sorted(VECTORS))
def test_a_manifest_naming_code_is_refused_with_nothing_run(vector, hostile):
    run, marker, name, _ = hostile(vector)
    module = name.partition(":")[0]
    imported_before = module in sys.modules
    line = one_line_error(analyze(run))
    assert f"--model {name}" in line  # it says how to allow it
    assert not marker.exists()
    assert (module in sys.modules) == imported_before  # not even imported
    assert not (run / "analysis").exists()


@pytest.mark.parametrize(
    "vector", ["torch-hub-local-dir", "runpy", "builtins-exec", "builtins-eval", "subprocess-run"]
)
def test_code_the_user_names_still_takes_no_place_or_code_from_the_run(vector, hostile):
    """Naming torch.hub:load (or runpy, exec …) again trusts that callable, not the arguments
    the run recorded for it: a hub directory, a script path, source text are refused."""
    run, marker, name, _ = hostile(vector)
    one_line_error(analyze(run, "--model", name))
    assert not marker.exists()
    assert not (run / "analysis").exists()


def test_a_manifest_naming_a_module_imports_nothing(imported, tmp_path, monkeypatch):
    """``this`` prints the Zen of Python when imported: it must not be imported at all."""
    run = tmp_path / "run"
    shutil.copytree(imported, run, ignore=shutil.ignore_patterns("analysis"))
    edit_model(run, "this:x", {})
    monkeypatch.delitem(sys.modules, "this", raising=False)
    one_line_error(analyze(run))
    assert "this" not in sys.modules


def fake_timm(marker: Path) -> types.ModuleType:
    """A stand-in for timm whose create_model leaves the marker: it shows whether the timm
    builder was reached at all."""
    from ncood.engine.resnet import ResNet18

    def create_model(variant, pretrained=False, num_classes=1000, **kwargs):
        marker.write_text(json.dumps(sorted(kwargs)))
        return ResNet18(num_classes, width=4)

    module = types.ModuleType("timm")
    module.is_model = lambda name: True
    module.create_model = create_model
    return module


@pytest.mark.parametrize(
    "arguments",
    [
        {"pretrained_cfg_overlay": {"file": "RUN/evil.pth"}},
        {"checkpoint_path": "RUN/evil.pth"},
        {"pretrained_cfg": "RUN/evil.pth"},
        {"cache_dir": "RUN"},
        {"drop_rate": "RUN/evil.pth"},  # a value naming a file, whatever its name
        {"drop_rate": "evil.pth"},  # the same, relative to the run folder
    ],
    ids=["overlay", "checkpoint_path", "pretrained_cfg", "cache_dir", "path", "relative"],
)
def test_timm_arguments_naming_a_file_are_refused(imported, tmp_path, monkeypatch, arguments):
    run, marker = tmp_path / "run", tmp_path / "MARKER"
    shutil.copytree(imported, run, ignore=shutil.ignore_patterns("analysis"))
    shutil.copy(imported.parent / "epoch_1.pth", run / "evil.pth")
    text = json.dumps(arguments).replace("RUN", str(run))
    edit_model(run, "timm:resnet18", json.loads(text))
    monkeypatch.setitem(sys.modules, "timm", fake_timm(marker))
    one_line_error(analyze(run))
    assert not marker.exists()


def test_timm_with_plain_arguments_is_rebuilt(imported, tmp_path, monkeypatch):
    """The control of the test above: plain arguments reach the (fake) timm, and the run is
    analyzed."""
    run, marker = tmp_path / "run", tmp_path / "MARKER"
    shutil.copytree(imported, run, ignore=shutil.ignore_patterns("analysis"))
    edit_model(run, "timm:resnet18", {"drop_rate": 0.0, "global_pool": "avg"})
    monkeypatch.setitem(sys.modules, "timm", fake_timm(marker))
    result = analyze(run)
    assert result.exit_code == 0, result.output
    assert json.loads(marker.read_text()) == ["drop_rate", "global_pool"]
    assert analyzed_by_odin(run)


def test_plain_arguments_the_builder_does_not_declare_are_refused(imported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(imported, run, ignore=shutil.ignore_patterns("analysis"))
    edit_model(run, "resnet18-cifar", {"width": 4, "depth": 3})
    one_line_error(analyze(run))
    edit_model(run, "resnet18-cifar", {"width": [4, {"nested": 1}]})
    one_line_error(analyze(run))
    edit_model(run, "torchvision:../../x", {})
    one_line_error(analyze(run))
    assert not (run / "analysis").exists()
    edit_model(run, "resnet18-cifar", {"width": 4})
    assert analyze(run).exit_code == 0 and analyzed_by_odin(run)


# -- naming your own code again makes it work ------------------------------------------------------


OWN_CODE = """
from ncood.engine.resnet import ResNet18

CALLS = []


def build(num_classes, width=64):
    CALLS.append(width)
    return ResNet18(num_classes, width=width)
"""


@pytest.fixture
def own_code(tmp_path, monkeypatch):
    """The user's module ``ncood_test_own_nets`` (``build(num_classes, width)``), importable."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "ncood_test_own_nets.py").write_text(OWN_CODE)
    monkeypatch.syspath_prepend(str(code))
    sys.modules.pop("ncood_test_own_nets", None)
    yield "ncood_test_own_nets:build"
    sys.modules.pop("ncood_test_own_nets", None)


def test_naming_the_callable_again_on_the_command_line_makes_it_work(tmp_path, own_code):
    weights = write_weights(tmp_path / "epoch_1.pth")
    run, name = tmp_path / "run", own_code
    result = extract(run, weights, name, "--model-arg", "width=4")  # the user's own choice
    assert result.exit_code == 0, result.output

    del sys.modules["ncood_test_own_nets"]
    one_line_error(analyze(run), f"--model {name}")
    assert "ncood_test_own_nets" not in sys.modules
    one_line_error(analyze(run, "--model", "ncood_test_own_nets:other"))
    one_line_error(analyze(run, "--model", "resnet18-cifar"))
    assert "ncood_test_own_nets" not in sys.modules

    result = analyze(run, "--model", name)
    assert result.exit_code == 0, result.output
    assert sys.modules["ncood_test_own_nets"].CALLS == [4]
    assert analyzed_by_odin(run)


def test_the_api_names_the_callable_with_model(tmp_path, own_code):
    from ncood.errors import NcoodError
    from ncood.extraction.rerun import open_model_inputs

    weights = write_weights(tmp_path / "epoch_1.pth")
    name = own_code
    assert extract(tmp_path / "run", weights, name, "--model-arg", "width=4").exit_code == 0
    run = RunDir.open(tmp_path / "run")
    with pytest.raises(NcoodError, match="model="):
        open_model_inputs(run, 1, device=torch.device("cpu"))
    inputs = open_model_inputs(run, 1, device=torch.device("cpu"), model=name)
    assert type(inputs.network.module).__name__ == "ResNet18"


def test_the_rule_for_recorded_arguments(tmp_path, monkeypatch):
    """Declared plain arguments pass (timm's drop_path_rate included); names and values that
    say where to load from, undeclared names and a hub variant do not, and nothing is built."""
    from ncood.errors import NcoodError
    from ncood.models.registry import ModelRegistry, check_recorded, rebuild_recorded

    built = []
    registry = ModelRegistry()
    registry.register("explicit", lambda num_classes, width=4, pretrained=False: built.append(1))
    registry.register("fam:*", lambda variant, num_classes, **kwargs: built.append(kwargs))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.txt").write_text("")

    allowed = [
        ("explicit", {"width": 8}),
        ("fam:vit_small.augreg_in21k", {"drop_path_rate": 0.1, "global_pool": "avg"}),
        ("fam:x", {"img_size": [224, 224], "act_layer": "gelu", "flag": None}),
    ]
    for name, arguments in allowed:
        check_recorded(registry, name, arguments)
    refused = [
        ("explicit", {"depth": 3}),  # not declared
        ("explicit", {"pretrained": True}),  # declared, but says where weights come from
        ("fam:x", {"checkpoint_path": "w.pth"}),
        ("fam:x", {"pretrained_cfg_overlay": {"file": "w.pth"}}),
        ("fam:x", {"repo_or_dir": "x", "source": "local"}),
        ("fam:x", {"weights": "IMAGENET1K_V1"}),
        ("fam:x", {"model_dir": "x"}),
        ("fam:x", {"act_layer": "here.txt"}),  # exists here
        ("fam:x", {"act_layer": "~/.bashrc"}),
        ("fam:x", {"act_layer": "https://example.com/x"}),
        ("fam:x", {"act_layer": "os:system"}),
        ("fam:x", {"sizes": [[1, 2]]}),
        ("fam:x", {"num_classes": 3}),
        ("fam:x", ["not", "a", "mapping"]),
        ("fam:hf-hub:org/model", {}),
        ("fam:local-dir:/tmp", {}),
        ("nope", {}),
        ("os:system", {}),
    ]
    for name, arguments in refused:
        with pytest.raises(NcoodError):
            check_recorded(registry, name, arguments)
        with pytest.raises(NcoodError):
            rebuild_recorded(registry, name, 3, arguments)
    assert built == []


# -- the weights file is found from any folder -----------------------------------------------------


def test_relative_weights_are_found_from_another_folder(tmp_path, monkeypatch):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_weights(project / "ckpt" / "epoch_1.pth")
    monkeypatch.chdir(project)
    args = ("resnet18-cifar", "--model-arg", "width=4")
    assert extract(Path("runs/r"), "ckpt/epoch_1.pth", *args).exit_code == 0
    run = project / "runs" / "r"
    recorded = json.loads((run / "manifest.json").read_text())["weights"][0]["file"]
    assert Path(recorded).resolve() == (project / "ckpt" / "epoch_1.pth").resolve()

    monkeypatch.chdir(elsewhere)
    result = analyze(run)
    assert result.exit_code == 0, result.output
    assert analyzed_by_odin(run)

    # a run written before this version recorded the path as given: still found
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["weights"][0]["file"] = "ckpt/epoch_1.pth"
    (run / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(run / "analysis")
    result = analyze(run)
    assert result.exit_code == 0, result.output
    assert analyzed_by_odin(run)

    (project / "ckpt" / "epoch_1.pth").unlink()  # really gone: one line
    one_line_error(analyze(run), "are gone")
