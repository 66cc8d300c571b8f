"""Box supervision of AnchorNet, against values worked out by hand from the mapping rule (docs/method.md §2)."""

import math

import pytest
import torch

from export.models.anchornet import AnchorNet
from export.training.anchornet import anchornet_loss
from export.training.box_supervision import SIZE_SMOOTHING, attention_target, box_loss, branch_targets


def test_the_attention_target_peaks_on_the_cell_whose_window_is_centred_on_the_box():
    # A 63 window at cell (r, c) spans [8c, 8c + 63): its centre is 8c + 31.5. A box centred at
    # (x, y) = (95.5, 55.5) is centred in cell c = 8, r = 3 exactly.
    target = attention_target(torch.tensor([[80.0, 40.0, 111.0, 71.0]]), 63, 21, 21)
    assert target.shape == (1, 21, 21) and target.sum().item() == pytest.approx(1.0)
    flat = int(target[0].argmax())
    assert divmod(flat, 21) == (3, 8)
    # Symmetric around it: one cell left and one cell right weigh the same.
    assert target[0, 3, 7].item() == pytest.approx(target[0, 3, 9].item())
    assert target[0, 3, 7].item() / target[0, 3, 8].item() == pytest.approx(math.exp(-0.5), rel=1e-5)


def test_branch_targets_are_hard_on_the_natural_branch_and_smoothed_elsewhere():
    targets = branch_targets(torch.tensor([2]), torch.tensor([1]), 4)
    assert targets[0, 1].tolist() == [0, 0, 1, 0]
    expected = [SIZE_SMOOTHING / 4] * 4
    expected[2] += 1 - SIZE_SMOOTHING
    assert targets[0, 0].tolist() == pytest.approx(expected) and targets[0, 2].tolist() == pytest.approx(expected)


def test_the_box_loss_is_least_when_attention_and_heatmap_sit_on_the_object():
    torch.manual_seed(0)
    model = AnchorNet(num_classes=10).eval()
    outputs = model.training_outputs(torch.randn(1, 3, 160, 160))
    box, label, natural = torch.tensor([[40.0, 40.0, 80.0, 80.0]]), torch.tensor([3]), torch.tensor([0])

    def placed_on(target_box: torch.Tensor):
        """Outputs whose S is the target of `target_box` and whose F says class 3 there, peaking as the target does."""
        s_maps, f_maps = [], []
        for field, logit_map in zip((63, 95, 111), outputs.logit_maps):
            cells = attention_target(target_box, field, *logit_map.shape[2:])
            s_maps.append(cells[:, None])
            f = torch.zeros_like(logit_map)
            f[:, 3] = 20 + cells.log()  # class 3 wins at the object, and F[3]'s spatial softmax is the target itself
            f_maps.append(f)
        return outputs._replace(logit_maps=tuple(f_maps), attention_maps=tuple(s_maps))

    on_object = box_loss(placed_on(box), label, box, natural).item()
    elsewhere = box_loss(placed_on(box + 40), label, box, natural).item()  # 5 cells off
    # On the object, the attention and F[label] terms are each branch's target entropy
    # (their minimum, Gibbs' inequality).
    entropy = sum(
        -(t * t.log()).sum().item()
        for t in (attention_target(box, f, m.shape[2], m.shape[3]) for f, m in zip((63, 95, 111), outputs.logit_maps))
    )
    assert on_object > 2 * entropy
    assert elsewhere > on_object + 10
    assert box_loss(outputs, label, box, natural).item() > on_object


def test_anchornet_loss_with_boxes_adds_the_box_terms():
    torch.manual_seed(0)
    model = AnchorNet(num_classes=10)
    images, labels = torch.randn(2, 3, 128, 128), torch.tensor([1, 7])
    boxes, natural = torch.tensor([[10.0, 10.0, 50.0, 50.0], [20.0, 30.0, 100.0, 110.0]]), torch.tensor([0, 1])
    torch.manual_seed(1)
    plain = anchornet_loss(model.eval(), images, labels).item()
    supervised = anchornet_loss(model, images, labels, boxes, natural).item()
    assert supervised > plain  # two non-negative terms per branch are added
