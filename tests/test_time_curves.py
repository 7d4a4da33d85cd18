"""`curves`: a score against minutes for several runs and reference curves, as one PNG."""

import json

import numpy as np
import pytest
from PIL import Image

from dti_sprites.cli import main
from dti_sprites.errors import DTISpritesError
from dti_sprites.outputs.time_curves import parse_reference, run_curve


def _run(folder, seconds, scores, heldout=None):
    folder.mkdir(parents=True)
    lines = ["iteration\tepoch\tseconds\tloss\tari_fg"]
    lines += [f"{500 * (i + 1)}\t{i}\t{s}\t0.05\t{v}" for i, (s, v) in enumerate(zip(seconds, scores))]
    (folder / "val_metrics.tsv").write_text("\n".join(lines) + "\n")
    if heldout is not None:
        (folder / "heldout_scores.json").write_text(json.dumps({"ari_fg": heldout}))
    return folder


def test_a_run_gives_minutes_and_its_held_out_score(tmp_path):
    run = _run(tmp_path / "a", [60, 120, 180], [0.3, 0.5, 0.6], heldout=0.58)
    assert run_curve(run, "ari_fg") == ([1.0, 2.0, 3.0], [0.3, 0.5, 0.6], 0.58)
    with pytest.raises(DTISpritesError, match="ari"):
        run_curve(run, "ari")


def test_references_are_label_and_minute_score_pairs():
    assert parse_reference("original=3:0.36,6:0.55") == ("original", [(3.0, 0.36), (6.0, 0.55)])
    for bad in ("3:0.36", "x=3", "x=3:a", "=3:0.1"):
        with pytest.raises(DTISpritesError, match="LABEL=MINUTES:SCORE"):
            parse_reference(bad)


def test_the_figure_draws_each_run_and_reference(tmp_path, capsys):
    a = _run(tmp_path / "a", [60, 120, 180], [0.3, 0.5, 0.6], heldout=0.58)
    b = _run(tmp_path / "b", [60, 240], [0.2, 0.7])
    out = tmp_path / "fig" / "curves.png"
    main(["curves", f"ours={a}", str(b), "--out", str(out), "--reference", "original=3:0.36,6:0.55"])
    assert capsys.readouterr().out.strip() == str(out)
    pixels = np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3)
    # matplotlib's first three cycle colours (blue, orange, green): one per curve, each drawn.
    for colour in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):
        assert (np.abs(pixels.astype(int) - colour).sum(1) < 30).sum() > 50, colour
