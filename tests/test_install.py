"""`pip install .` (not editable) into a fresh virtual environment gives a working ncood."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_regular_install_ships_plugins_and_templates(tmp_path, demo_run):
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # Dependencies (torch is several GB) come from the current environment; ncood itself does not.
    fresh_site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(fresh_site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "runs", "reports", "*.egg-info", "__pycache__", "build"
        ),
    )
    # Build the wheel `pip install .` builds (with this environment's setuptools), then install it.
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("ncood-*.whl")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(source)  # the installed copy must not need the source tree
    ncood = env_dir / "bin" / "ncood"

    done = subprocess.run(
        [ncood, "plugins", "--json"], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert {"scorers.logits", "analyses.neural_collapse", "sections.intro"} <= set(rows)
    assert {"models.openood", "models.torchvision", "models.resnet_cifar"} <= set(rows)
    assert all(row["builtin"] for row in rows.values())

    # ncood extract from the installed copy (its model registry and extraction packages)
    from safetensors.torch import save_file

    from ncood.engine.resnet import ResNet18

    save_file(ResNet18(10, width=4).state_dict(), str(tmp_path / "w.safetensors"))
    options = "--dataset digits --ood noise --limit 8 --image-size 16 --quiet".split()  # noqa: SIM905
    done = subprocess.run(
        [ncood, "extract", "--model", "resnet18-cifar", "--model-arg", "width=4"]
        + ["--weights", tmp_path / "w.safetensors", "--out", tmp_path / "imported", *options],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "imported" / "features" / "epoch-0001.safetensors").is_file()

    where = subprocess.run(
        [
            python,
            "-c",
            "import ncood, ncood_templates; print(ncood.__file__, ncood_templates.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert str(ROOT) not in where and str(env_dir) in where

    done = subprocess.run(
        [ncood, "report", str(demo_run.root), "--out", str(tmp_path / "rep"), "--no-pdf"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert r"\section{Entraînement" in (tmp_path / "rep" / "ncood-report-fr.tex").read_text()
