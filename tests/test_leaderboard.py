"""The norm leaderboard, and the worked example of docs/norms.md: a norm written in a file outside the
repository trains, compares and enters the leaderboard through the three documented commands."""
import json
import re
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_cli
from normlab import leaderboards
from normlab.errors import NormlabError

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "norms.md").read_text()


def test_intervals_use_students_t():
    mean, half = leaderboards.interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / 3 ** 0.5)
    assert leaderboards.interval([5.0]) == (5.0, None)


def test_rows_pair_each_norm_with_bn_seed_for_seed():
    results = [{"arch": "s8", "norm": n, "seed": s, "batch_size": 128, "test_acc": acc, "params": 1,
                "images_per_second": 10.0}
               for n, accs in (("bn", (70.0, 72.0)), ("gn", (69.0, 72.5))) for s, acc in enumerate(accs)]
    rows = {r["norm"]: r for r in leaderboards.rows(results, ["s8"] * len(results))}
    assert rows["gn"]["diff_to_bn"] == pytest.approx(-0.25) and rows["bn"]["diff_to_bn"] is None
    assert rows["gn"]["diff_ci95"] == pytest.approx(12.706 * 2 ** 0.5 * 0.75 / 2 ** 0.5)


def test_the_protocol_is_fixed(tmp_path):
    import normlab

    with pytest.raises(NormlabError, match="protocol fixes epochs"):
        normlab.leaderboard(epochs=3, out=tmp_path)
    with pytest.raises(NormlabError, match="unknown protocol"):
        normlab.leaderboard(protocols=("resnet",), out=tmp_path)
    planned = leaderboards.plan(["gn"], ["s8"], seeds=(0,), out=tmp_path)
    assert [(c.norm, c.batch_size, c.lr) for _, c in planned] == [("bn", 128, 0.01), ("gn", 128, 0.01),
                                                                  ("bn", 4, 0.01 * 4 / 128), ("gn", 4, 0.01 * 4 / 128)]
    quick = leaderboards.plan(["gn"], ["s8"], seeds=(0,), quick=True, out=tmp_path)
    assert all("quick-s8" in c.out and c.epochs == 2 for _, c in quick)


def _doc_block(after: str) -> str:
    """The first code block after the heading ``after`` in docs/norms.md."""
    return re.search(re.escape(after) + r".*?```[a-z]*\n(.*?)```", DOC, re.S).group(1)


@pytest.fixture
def outside(tmp_path, monkeypatch):
    folder = tmp_path / "my-project"
    folder.mkdir()
    (folder / "my_norms.py").write_text(_doc_block("## Your own norm"))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    return folder


def test_the_documented_example_trains_compares_and_enters_the_leaderboard(outside, real_data_dir):
    commands = [line.strip() for line in _doc_block("three commands").splitlines() if line.strip()]
    assert [c.split()[1] for c in commands] == ["train", "compare", "leaderboard"]
    # The documented commands as written, made small: fewer images and epochs, one seed for the quick board.
    small = {"train": ["--train-size", "256", "--epochs", "1"], "compare": ["--train-size", "256", "--epochs", "1"],
             "leaderboard": ["--seeds", "0"]}
    for command in commands:
        args = command.split()[1:]
        proc = run_cli(*args, *small[args[0]], "--precision", "fp32", "--no-progress", "--data-dir", real_data_dir,
                       cwd=outside)
        assert proc.returncode == 0, proc.stderr
    board = json.loads((outside / "runs" / "leaderboard" / "quick-leaderboard.json").read_text())
    assert board["quick"] and {r["norm"] for r in board["rows"]} == {"bn", "my_norms:rms"}
    assert {r["batch"] for r in board["rows"]} == {128, 4}
    assert "QUICK" in (outside / "runs" / "leaderboard" / "quick-leaderboard.md").read_text()
    rms = next(r for r in board["rows"] if r["norm"] == "my_norms:rms")
    assert rms["params"] == 48_096 - 240
    # the finished runs are reused: a second board trains nothing
    again = run_cli("leaderboard", "--norms", "my_norms:rms", "--quick", "--seeds", "0", "--report-only",
                    "--data-dir", real_data_dir, cwd=outside)
    assert again.returncode == 0 and "my_norms:rms" in again.stdout


def test_a_board_with_no_finished_runs_is_a_one_line_error(tmp_path):
    assert_one_line_error(run_cli("leaderboard", "--report-only", "--out", tmp_path / "b"), "no finished runs")


def test_the_board_renders_in_chromium(tmp_path):
    from test_report import open_in_chromium

    results = [{"arch": "s8", "norm": n, "seed": s, "batch_size": b, "test_acc": 70.0 + s + (n == "gn"),
                "params": 48_096, "images_per_second": 1000.0}
               for b in (128, 4) for s in (0, 1, 2) for n in ("bn", "gn")]
    table = leaderboards.rows(results, ["s8"] * len(results))
    leaderboards.write(tmp_path, table, quick=True, expected=12, finished=12)
    state = open_in_chromium(tmp_path / "quick-leaderboard.html", tmp_path / "shot.png")
    assert state["errors"] == [] and "QUICK" in state["title"]
    md = (tmp_path / "quick-leaderboard.md").read_text()
    assert "| s8 | 128 | gn | 3 | 72.00 ± 2.48 | +1.00 ± 0.00 |" in md and "| unrecorded |" in md


def test_throughput_is_the_median_epoch_so_a_busy_spell_does_not_count(tmp_path):
    rows_ = [{"epoch": i + 1, "images_per_second": v} for i, v in enumerate([1500.0, 1480.0, 310.0, 1510.0])]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_))
    assert leaderboards.median_epoch_rate(tmp_path, {"images_per_second": 999.0}) == 1490.0
    assert leaderboards.median_epoch_rate(tmp_path / "gone", {"images_per_second": 999.0}) == 999.0


def test_the_cpu_of_each_row_is_named():
    assert leaderboards.short_cpu("Intel(R) Xeon(R) Processor") == "Intel Xeon"
    assert leaderboards.short_cpu("AMD EPYC 9R14 96-Core Processor") == "AMD EPYC 9R14 96-Core"
    assert leaderboards.short_cpu(None) == "unrecorded"
    results = [{"arch": "s8", "norm": "bn", "seed": s, "batch_size": 128, "test_acc": 70.0, "params": 1,
                "images_per_second": 1.0, "cpu": c} for s, c in ((0, "Intel(R) Xeon(R) Processor"), (1, None))]
    assert leaderboards.rows(results, ["s8", "s8"])[0]["cpu"] == "Intel Xeon, unrecorded"
    results[1].update(cpu="Intel(R) Xeon(R) Processor", compiled=True)  # a compiled run says so
    assert leaderboards.rows(results, ["s8", "s8"])[0]["cpu"] == "Intel Xeon, Intel Xeon (compiled)"


def test_a_board_part_way_says_which_runs_it_still_lacks(tmp_path):
    results = [{"arch": "s8", "norm": n, "seed": 0, "batch_size": 128, "test_acc": 70.0, "params": 1,
                "images_per_second": 1.0} for n in ("bn", "gn")]
    missing = [{"protocol": "s8", "batch": 4, "seed": s, "norm": n} for s in (0, 1) for n in ("bn", "gn")]
    assert leaderboards.still_to_run(missing) == "s8, batch 4, seed 0: bn, gn; s8, batch 4, seed 1: bn, gn"
    leaderboards.write(tmp_path, leaderboards.rows(results, ["s8", "s8"]), False, 6, 2, missing)
    assert "Still to run (4): s8, batch 4, seed 0: bn, gn; s8, batch 4, seed 1: bn, gn." in (
        tmp_path / "leaderboard.md").read_text()
    assert "Still to run (4)" in (tmp_path / "leaderboard.html").read_text()
    assert json.loads((tmp_path / "leaderboard.json").read_text())["runs_missing"] == missing
    leaderboards.write(tmp_path, leaderboards.rows(results, ["s8", "s8"]), False, 2, 2)  # complete: no such line
    assert "Still to run" not in (tmp_path / "leaderboard.md").read_text()
