"""scripts/bn_recalibration.py: runs that cannot be judged on a validation split are refused in one line,
before the data set is read."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(*args, data_dir="/nonexistent-data"):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "bn_recalibration.py"), *map(str, args),
                           "--data-dir", data_dir], capture_output=True, text=True)


def test_an_all_data_run_is_refused_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"arch": "convmixer-hr2", "norm": "bn", "val_size": None}))
    proc = _script(tmp_path)
    assert proc.returncode == 2
    assert "no validation split" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_folder_without_a_config_is_refused(tmp_path):
    proc = _script(tmp_path / "missing")
    assert proc.returncode == 2 and "config.json" in proc.stderr and "Traceback" not in proc.stderr
