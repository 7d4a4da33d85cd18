"""Segmentation scores: ARI against sklearn, semantic scores on hand-made confusions."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from dti_sprites.evaluation.metrics import (
    ConfusionMatrix,
    adjusted_rand_index,
    mean_ari,
    semantic_scores,
)


def _sklearn_ari(true: torch.Tensor, pred: torch.Tensor) -> list[float]:
    return [adjusted_rand_score(t.numpy(), p.numpy()) for t, p in zip(true, pred)]


def test_ari_matches_sklearn_on_random_labelings():
    gen = torch.Generator().manual_seed(0)
    for n_true, n_pred in [(2, 2), (4, 7), (10, 3), (1, 5)]:
        true = torch.randint(n_true, (5, 200), generator=gen)  # (B, N)
        pred = torch.randint(n_pred, (5, 200), generator=gen) * 3 + 100  # sparse, large labels
        ours = adjusted_rand_index(true, pred)
        assert ours.dtype == torch.float64 and ours.shape == (5,)
        np.testing.assert_allclose(ours.numpy(), _sklearn_ari(true, pred), atol=1e-12)


def test_ari_matches_sklearn_on_correlated_labelings():
    gen = torch.Generator().manual_seed(1)
    true = torch.randint(5, (4, 300), generator=gen)  # (B, N)
    noise = torch.rand(4, 300, generator=gen) < 0.2
    pred = torch.where(noise, torch.randint(5, (4, 300), generator=gen), true)
    ours = adjusted_rand_index(true, pred)
    np.testing.assert_allclose(ours.numpy(), _sklearn_ari(true, pred), atol=1e-12)
    assert (ours > 0.4).all()


def test_ari_identical_and_permuted_labels_score_one():
    true = torch.randint(6, (3, 100), generator=torch.Generator().manual_seed(2))  # (B, N)
    perm = torch.tensor([4, 0, 5, 2, 1, 3])
    assert torch.equal(adjusted_rand_index(true, true), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(adjusted_rand_index(true, perm[true]), torch.ones(3, dtype=torch.float64))


def test_ari_with_valid_mask_matches_sklearn_on_kept_pixels():
    gen = torch.Generator().manual_seed(3)
    true = torch.randint(4, (3, 150), generator=gen)  # (B, N)
    pred = torch.randint(3, (3, 150), generator=gen)
    valid = true != 0
    ours = adjusted_rand_index(true, pred, valid)
    expected = [adjusted_rand_score(t[v].numpy(), p[v].numpy()) for t, p, v in zip(true, pred, valid)]
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize(
    "true, pred",
    [
        ([0, 0, 0, 0], [5, 5, 5, 5]),  # both a single cluster
        ([0, 0, 0, 0], [0, 1, 2, 3]),  # one cluster vs all singletons
        ([0, 1, 2, 3], [0, 1, 2, 3]),  # all singletons
        ([0, 0, 1, 1], [0, 0, 0, 0]),
        ([7], [3]),  # a single pixel
    ],
)
def test_ari_degenerate_cases_follow_sklearn(true, pred):
    ours = adjusted_rand_index(torch.tensor([true]), torch.tensor([pred]))
    assert float(ours[0]) == pytest.approx(adjusted_rand_score(true, pred))


def test_ari_is_nan_without_valid_pixels():
    true = torch.tensor([[1, 2, 0], [1, 1, 2]])  # (B, N)
    valid = torch.tensor([[False, False, False], [True, True, True]])
    ours = adjusted_rand_index(true, true, valid)
    assert math.isnan(ours[0]) and ours[1] == 1.0


def test_mean_ari_skips_images_without_foreground():
    true = torch.zeros(2, 4, 4, dtype=torch.long)  # (B, H, W)
    true[0, :2] = 1
    true[0, 2:, :2] = 2
    pred = true.clone()
    pred[0, 0, 0] = 2  # one wrong pixel in image 0; image 1 has no foreground
    ari, ari_fg = mean_ari(true, pred), mean_ari(true, pred, foreground_only=True)
    flat_t, flat_p = true.reshape(2, -1), pred.reshape(2, -1)
    fg = flat_t[0] != 0
    assert ari == pytest.approx(np.mean(_sklearn_ari(flat_t, flat_p)))
    assert ari_fg == pytest.approx(adjusted_rand_score(flat_t[0][fg], flat_p[0][fg]))
    assert isinstance(ari, float)


def _two_objects_with_a_hole():
    """One 1x6 image: true objects A (pixels 0-2) and B (3-4) on background (pixel 5). Layer 1
    paints A red but its mask misses pixel 2; layer 2 paints B green; the background is dark green."""
    from dti_sprites.model.decomposition import Decomposition

    red, green, dark_green = [1.0, 0, 0], [0, 1.0, 0], [0, 0.2, 0]
    image = torch.tensor([red, red, red, green, green, dark_green]).T.reshape(1, 3, 1, 6)  # (B, C, H, W)
    colors = torch.stack(
        [
            torch.zeros(1, 3, 1, 6),  # background first
            torch.tensor(red)[None, :, None, None].expand(1, 3, 1, 6),
            torch.tensor(green)[None, :, None, None].expand(1, 3, 1, 6),
        ]
    )  # (L', B, C, H, W)
    masks = torch.zeros(3, 1, 1, 1, 6)
    masks[0] = 1
    masks[1, ..., :2] = 1  # the hole: pixel 2
    masks[2, ..., 3:5] = 1
    occlusion = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0]])[None]  # (B, L', L'): j in front of k
    out = Decomposition(
        recon=image,
        loss=torch.zeros(1),
        sprite_idx=torch.zeros(2, 1, dtype=torch.long),
        bkg_idx=torch.zeros(1, dtype=torch.long),
        colors=colors,
        masks=masks,
        occlusion=occlusion,
        has_background=True,
    )
    true = torch.tensor([[[1, 1, 1, 2, 2, 0]]])  # (B, H, W)
    return out, image, true


def test_filled_ari_fg_gives_a_hole_to_the_layer_of_its_colour():
    """The original's ARI-FG fills predicted background with the closest-colour layer: the hole
    in A joins A (score 1), while the standard ARI-FG counts it as a third segment."""
    from dti_sprites.evaluation.multi_object import fill_background, front_layer

    out, image, true = _two_objects_with_a_hole()
    plain = front_layer(out)
    filled = fill_background(plain, out, image)
    assert plain.tolist() == [[[1, 1, 0, 2, 2, 0]]]
    assert filled.tolist() == [[[1, 1, 1, 2, 2, 2]]]  # true background is filled too, but ARI-FG skips it
    assert torch.equal(front_layer(out, image), filled)  # what the figures and eval_with_bkg: false use
    fg = slice(0, 5)
    expected = adjusted_rand_score([1, 1, 1, 2, 2], plain[0, 0, fg].tolist())  # segments {0,1} {2} {3,4}
    assert expected == pytest.approx(6 / 11)
    assert mean_ari(true, plain, foreground_only=True) == pytest.approx(expected)
    assert mean_ari(true, filled, foreground_only=True) == 1.0


def test_confusion_matrix_accumulates_pred_by_true():
    cm = ConfusionMatrix(n_true=3, n_pred=4)
    cm.update(torch.tensor([[[0, 1], [2, 2]]]), torch.tensor([[[0, 3], [1, 1]]]))
    cm.update(torch.tensor([[[0, 0]]]), torch.tensor([[[2, 0]]]))
    expected = np.zeros((4, 3), dtype=np.int64)
    expected[0, 0], expected[3, 1], expected[1, 2], expected[2, 0] = 2, 1, 2, 1
    np.testing.assert_array_equal(cm.matrix, expected)
    with pytest.raises(ValueError, match="pred labels"):
        cm.update(torch.tensor([[0]]), torch.tensor([[4]]))


def test_semantic_scores_perfect_up_to_permutation():
    truth = np.diag([50, 10, 20, 30]).astype(np.int64)  # (n_true, n_true)
    confusion = np.zeros((5, 4), dtype=np.int64)  # (n_pred, n_true): 5 labels, one never used
    confusion[[2, 0, 4, 1]] = truth
    scores = semantic_scores(confusion, class_names=["bkg", "a", "b", "c"])
    for key in ["global_acc", "mean_acc", "mean_iou", "global_acc_fg", "mean_acc_fg", "mean_iou_fg"]:
        assert scores[key] == pytest.approx(1.0), key
    assert all(scores[f"iou_{c}"] == pytest.approx(1.0) for c in ["bkg", "a", "b", "c"])


def test_semantic_scores_hand_computed_case():
    # Rows: predicted labels 0..3, columns: true classes 0..2.
    confusion = np.array(
        [
            [8, 1, 0],  # label 0 -> class 0
            [2, 6, 1],  # label 1 -> class 1
            [0, 1, 4],  # label 2 -> class 2
            [0, 2, 0],  # label 3 unmatched: its 2 pixels are wrong
        ]
    )
    s = semantic_scores(confusion)
    # Class totals: 10, 10, 5 (25 pixels); correct 8, 6, 4.
    # Predicted as class: 9, 9, 5 -> IoU = 8/(10+9-8), 6/(10+9-6), 4/(5+5-4).
    iou = [8 / 11, 6 / 13, 4 / 6]
    assert s["global_acc"] == pytest.approx(18 / 25)
    assert s["mean_acc"] == pytest.approx((8 / 10 + 6 / 10 + 4 / 5) / 3)
    assert s["mean_iou"] == pytest.approx(np.mean(iou))
    assert s["global_acc_fg"] == pytest.approx(10 / 15)
    assert s["mean_acc_fg"] == pytest.approx((6 / 10 + 4 / 5) / 2)
    assert s["mean_iou_fg"] == pytest.approx(np.mean(iou[1:]))
    assert [s["iou_0"], s["iou_1"], s["iou_2"]] == pytest.approx(iou)
