"""Publish a finished run's weights with the package (issue 12): write
``mgiad/models/weights/MODEL-TAG.safetensors`` (the plain state dict, no optimizer), evaluate the
checkpoint with ``mgiad eval`` and print the ``PUBLISHED`` entry for ``mgiad/models/pretrained.py``
(file, SHA-256, data set, classes, normalisation, the command that trained it, the test accuracy).

    python benchmarks/publish_weights.py RUN_DIR MODEL.TAG

MODEL must be the registered name whose default hyper-parameters build exactly the run's network
(checked: same state-dict keys and shapes), so that ``create_model(MODEL, pretrained=True)`` fits.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from safetensors.torch import save_file

import mgiad
from mgiad.models.pretrained import WEIGHTS_DIR
from mgiad.training.checkpoint import load_model


def main(run_dir: str, name: str) -> None:
    arch, _, tag = name.partition(".")
    if not tag:
        sys.exit("give MODEL.TAG, e.g. mgiad_3lvl_fmnist.fashionmnist")
    model, header = load_model(run_dir)
    fresh = mgiad.create_model(arch, num_classes=header["num_classes"], in_chans=header["in_chans"])
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in fresh.state_dict().items()}
    if ours != theirs:
        sys.exit(f"{arch}'s defaults do not build the run's network ({header['model']} "
                 f"{header.get('model_kwargs')}): state dicts differ")
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    file = WEIGHTS_DIR / f"{arch}-{tag}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file),
              metadata={"model": arch, "tag": tag, "dataset": header["dataset"]})
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    result = json.loads(subprocess.run([sys.executable, "-m", "mgiad", "eval", run_dir, "--json"],
                                       check=True, capture_output=True, text=True).stdout)
    run_json = json.loads((Path(run_dir) / "run.json").read_text())
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    from mgiad.models.pretrained import _DATA

    if header["dataset"] not in _DATA:
        print(f'''add to _DATA in mgiad/models/pretrained.py:
    "{header['dataset']}": dict(
        num_classes={header['num_classes']}, in_chans={header['in_chans']}, image_size={header['image_size']}, pad_to={header.get('pad_to')!r},
        mean={tuple(round(m, 6) for m in header['mean'])!r}, std={tuple(round(s, 6) for s in header['std'])!r},
        classes={tuple(header['classes'])!r}),''')
    print(f'''add to PUBLISHED:
    "{name}": _trained_on(
        "{header['dataset']}",
        file="{file.name}",
        sha256="{digest}",
        test_acc={100 * result['test_acc']:.2f},
        command="{' '.join(run_json.get('argv', []))}",
        weights={sum(p.numel() for p in model.parameters())}, epochs={summary['epochs_done']},
        train_hours={summary['wall_time_s'] / 3600:.2f}, hardware="{run_json.get('hardware')}",
    ),''')
    records = Path(__file__).resolve().parents[1] / "results" / "pretrained" / name
    records.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "run.json", "metrics.jsonl", "summary.json"):
        (records / f).write_bytes((Path(run_dir) / f).read_bytes())
    (records / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [json.loads(line) for line in (records / "metrics.jsonl").read_text().splitlines()]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["epoch"] for r in rows], [100 * r["train_acc"] for r in rows], label="train")
    ax.plot([r["epoch"] for r in rows if r["test_acc"] is not None],
            [100 * r["test_acc"] for r in rows if r["test_acc"] is not None], label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(name)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(records / "curve.png", dpi=110)
    print(f"records and curve in {records}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
