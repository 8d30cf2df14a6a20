"""Shared fixtures. Only ncood's built-in plugins load in tests, whatever else is installed."""

from __future__ import annotations

import os

os.environ["NCOOD_LOAD_PLUGINS"] = ""  # before anything builds the plugin host
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
from nc_builders import make_dump  # noqa: E402

from ncood.store.features import FeatureDump  # noqa: E402


@pytest.fixture
def tiny_dump() -> FeatureDump:
    return make_dump()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """A 2-epoch demo run at width 4, analyzed at every checkpoint (shared, read-only)."""
    from ncood.analyze.driver import analyze_file, select
    from ncood.engine.presets import resolve_preset
    from ncood.engine.train import train
    from ncood.host.loading import host

    root = tmp_path_factory.mktemp("runs") / "demo"
    config = resolve_preset("demo-standard", epochs=2, width=4, checkpoint_every=1)
    run = train(config, root, show_progress=False)
    scorers, analyses = select(host(), None)
    for epoch in run.feature_epochs():
        analyze_file(run.features(epoch), run.analysis_dir(epoch), scorers, analyses)
    return run


@pytest.fixture
def plugin_host():
    """``add(plugin, name)`` registers a test plugin (not built in) on the process-wide host;
    every one is removed afterwards."""
    from ncood.host.loading import host

    added: list[str] = []

    def add(plugin: object, name: str) -> None:
        host().add(plugin, name, distribution="ncood-test-plugin", version="0.0", builtin=False)
        added.append(name)

    yield add
    for name in added:
        host().remove(name)


@pytest.fixture
def third_party_sections_only(monkeypatch):
    """The report builds only the sections of non-built-in plugins (the built-ins draw many
    figures, which is not what the tests using this are about)."""
    from ncood.host.loading import host
    from ncood.host.registry import Registry
    from ncood.report import build as build_module

    class Host:
        def report_sections(self):
            sections = Registry("report section")
            for name, section in host().report_sections().items():
                if not host().info[section.plugin].builtin:
                    sections.add(name, section)
            return sections

    monkeypatch.setattr(build_module, "host", Host)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (small trainings are faster so on 2 shared cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The end-to-end tests: they train, run LaTeX, install a wheel, start torchrun or kill a
# process. `make test` (and CI) runs them; `make test-quick` (`pytest -m "not slow"`) skips them
# for a fast loop while editing. A test is slow if it is in one of these modules or uses a
# trained run (the session's `demo_run`).
SLOW_MODULES = {
    "test_distributed",
    "test_faults",
    "test_extract_command",
    "test_extract_torchrun",
    "test_install",
    "test_lost_scores",
    "test_memory_bound",
    "test_pipeline",
    "test_build",
    "test_report_stats",
    "test_resume",
    "test_example_plugin",
    "test_seeds",
    "test_third_party",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__ in SLOW_MODULES or "demo_run" in item.fixturenames:
            item.add_marker(pytest.mark.slow)
