"""Loads every file a training run kept, the way --resume and serving would; run INSIDE the runtime image
(the host has no TensorFlow): `python run_files_check.py RUNS_DIR` prints one JSON object per run dir.

A file that does not load raises, so the container exits non-zero with the traceback. Temp files of an
interrupted atomic write (`.NAME.tmp-RANDOM...`, `ckpt-N_temp/`) are ignored, as the loaders ignore them.
"""

import json
import sys
from pathlib import Path

import keras
import tensorflow as tf


def check_checkpoints(directory: Path) -> dict:
    """Every checkpoint the index lists, and every complete-looking one it does not (yet) list."""
    state = tf.train.get_checkpoint_state(str(directory))
    listed = [Path(path).name for path in state.all_model_checkpoint_paths] if state else []
    present = sorted(index.name.removesuffix(".index") for index in directory.glob("ckpt-*.index"))
    for name in sorted({*listed, *present}):
        reader = tf.train.load_checkpoint(str(directory / name))
        for variable in reader.get_variable_to_shape_map():
            reader.get_tensor(variable)
    return {"listed": listed, "loaded": sorted({*listed, *present})}


def check_run(run_dir: Path) -> dict:
    result: dict = {"run": run_dir.name}
    for name in ("config.json", "metrics.json"):
        if (run_dir / name).exists():
            result[name] = sorted(json.loads((run_dir / name).read_text()))[:3]
    if (run_dir / "checkpoints").is_dir():
        result["checkpoints"] = check_checkpoints(run_dir / "checkpoints")
    if (run_dir / "model.keras").exists():
        result["model.keras"] = keras.models.load_model(run_dir / "model.keras").count_params()
    if (run_dir / "saved_model").exists():
        tf.saved_model.load(str(run_dir / "saved_model"))
        result["saved_model"] = "loaded"
    stray = [path for path in run_dir.rglob("*") if ".tmp-" in path.name or path.name.endswith("_temp")]
    result["stray"] = sorted(str(path.relative_to(run_dir)) for path in stray)
    return result


if __name__ == "__main__":
    for run_dir in sorted(path for path in Path(sys.argv[1]).iterdir() if path.is_dir()):
        print(json.dumps(check_run(run_dir)), flush=True)
