"""`lorat evaluate --runs 0` (or negative) is refused in one line naming --runs, before anything loads."""
from __future__ import annotations

from pathlib import Path

import pytest

from lorat_plugin.cli import main


@pytest.mark.parametrize("runs", ["0", "-2"])
def test_evaluate_runs_0_names_the_setting(tmp_path: Path, capsys, monkeypatch, runs: str) -> None:
    import lorat_plugin.data.datasets as datasets

    def must_not_load(*args, **kwargs):
        raise AssertionError("the dataset was read before --runs was checked")

    monkeypatch.setattr(datasets, "load_dataset", must_not_load)
    code = main(["evaluate", "--dataset", "got10k", "--split", "val", "--root", str(tmp_path),
                 "--output", str(tmp_path / "run"), "--runs", runs, "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == (f"lorat evaluate: error: --runs {runs}: give the number of runs per "
                                         "sequence, 1 or more")
    assert not (tmp_path / "run").exists()
