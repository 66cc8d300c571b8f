"""AnchorNet against the paper's own figures (section 3.2, Tables 1-2; docs/method.md §1-§2).

Every expected value here is worked out from the paper or by hand, never read
back from the model: map sizes 21/17/15, receptive fields 63/95/111 at stride 8
(checked by gradients, pixel by pixel), about 1.6 M parameters and 0.5 G
multiply-adds at 224 with 1000 classes.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest
import torch
from torch import nn

from export.models.anchornet import (
    BRANCH_RECEPTIVE_FIELDS,
    BRANCH_STRIDE,
    OUTPUT_NAMES_ATTENTION,
    OUTPUT_NAMES_GAP,
    AnchorNet,
    AttentionBranch,
    Bneck,
)
from export.models.flops import count_multiply_adds

PAPER_MAP_SIZES = {63: 21, 95: 17, 111: 15}  # section 3.2: 21^2, 17^2, 15^2 locations for 224 x 224


def _randomize_batch_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial eval-mode BN statistics, so no channel is accidentally symmetric or dead."""
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            n = bn.num_features
            bn.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            bn.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            bn.weight.data.copy_(0.5 + torch.rand(n, generator=generator))
            bn.bias.data.copy_(0.1 * torch.randn(n, generator=generator))


@pytest.fixture(scope="module")
def rf_model() -> AnchorNet:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = AnchorNet(num_classes=4).double().eval()
    with torch.no_grad():
        _randomize_batch_norms(model, generator)
    return model


@contextmanager
def se_gates_held_constant(model: nn.Module) -> Iterator[None]:
    """Detach every squeeze-excite gate (the only Hardsigmoids) for this block of code.

    An SE gate pools the whole map, so without this every output would depend
    on every pixel; the receptive field the paper means is that of the
    convolutions. Forward hooks leave the production code path untouched.
    """
    gates = [m for m in model.modules() if isinstance(m, nn.Hardsigmoid)]
    assert gates, "expected squeeze-excite gates (Table 1 and 2 rows with SE)"
    handles = [gate.register_forward_hook(lambda _m, _i, out: out.detach()) for gate in gates]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _input_support(model: AnchorNet, branch: int, locations: list[tuple[int, int]]) -> list[torch.Tensor]:
    """For each (row, col) of a branch map: where the input gradient of its class sum is nonzero, (224, 224) bool."""
    image = torch.randn(1, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    image.requires_grad_(True)
    with se_gates_held_constant(model):
        logit_map = model(image)[1 + branch]
    supports = []
    for r, c in locations:
        (grad,) = torch.autograd.grad(logit_map[0, :, r, c].sum(), image, retain_graph=True)
        supports.append(grad.abs().sum(1)[0] != 0)
    return supports


def _box_mask(x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    mask = torch.zeros(224, 224, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _bounding_box(support: torch.Tensor) -> tuple[int, int, int, int]:
    rows, cols = support.nonzero(as_tuple=True)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def _locations(size: int) -> list[tuple[int, int]]:
    """Corners, centre and an off-centre location of a size x size map."""
    last = size - 1
    return [(0, 0), (0, last), (last, 0), (last, last), (size // 2, size // 2), (3, size // 2 + 2)]


def test_map_shapes_and_probabilities_at_224():
    torch.manual_seed(0)
    image = torch.randn(1, 3, 224, 224)
    gap_model = AnchorNet(num_classes=7).eval()
    with torch.no_grad():
        probs, *maps = gap_model(image)
    assert len(OUTPUT_NAMES_GAP) == 1 + len(maps) == 4
    assert probs.shape == (1, 3, 7)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 3))
    for k, logit_map in zip(BRANCH_RECEPTIVE_FIELDS, maps):
        size = PAPER_MAP_SIZES[k]
        assert logit_map.shape == (1, 7, size, size)
    # Section 3.1: floor((224 - k) / 8) + 1 locations per side.
    assert [(224 - k) // BRANCH_STRIDE + 1 for k in BRANCH_RECEPTIVE_FIELDS] == [21, 17, 15]
    # Plain GAP pooling: probs are the softmax of each map's spatial mean.
    expected = torch.stack([m.mean((2, 3)).softmax(1) for m in maps], 1)
    torch.testing.assert_close(probs, expected)

    attention_model = AnchorNet(num_classes=7, pooling="attention").eval()
    with torch.no_grad():
        probs, *rest = attention_model(image)
    maps, attention_maps = rest[:3], rest[3:]
    assert len(OUTPUT_NAMES_ATTENTION) == 1 + len(rest) == 7
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 3))
    for k, s in zip(BRANCH_RECEPTIVE_FIELDS, attention_maps):
        size = PAPER_MAP_SIZES[k]
        assert s.shape == (1, 1, size, size)
        assert (s >= 0).all()
        torch.testing.assert_close(s.sum((2, 3)), torch.ones(1, 1))
    expected = torch.stack([(m * s).sum((2, 3)).softmax(1) for m, s in zip(maps, attention_maps)], 1)
    torch.testing.assert_close(probs, expected)


def test_gap_pooling_does_not_run_the_attention_branch():
    model = AnchorNet(num_classes=3).eval()
    calls = []
    for module in model.modules():
        if isinstance(module, AttentionBranch):
            module.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert calls == []


@pytest.mark.parametrize("branch", range(3))
def test_receptive_field_is_exactly_the_mapped_box(rf_model, branch):
    """docs/method.md §2: location (r, c) sees exactly [8c, 8c + k) x [8r, 8r + k), k = 63, 95, 111."""
    k = (63, 95, 111)[branch]
    locations = _locations(PAPER_MAP_SIZES[k])
    for (r, c), support in zip(locations, _input_support(rf_model, branch, locations)):
        expected = _box_mask(8 * c, 8 * r, 8 * c + k, 8 * r + k)
        assert support.any(), f"B{k} ({r}, {c}): no gradient at all"
        assert torch.equal(support, expected), (
            f"B{k} ({r}, {c}): gradient support bounding box {_bounding_box(support)}, "
            f"{int(support.sum())} px; expected box {(8 * c, 8 * r, 8 * c + k, 8 * r + k)}, {k * k} px"
        )


@pytest.mark.parametrize("branch", range(3))
def test_residual_skips_are_center_cropped(rf_model, branch):
    """With every residual block's conv path silenced, the skips alone must stay centred in the box.

    A corner-cropped skip lies inside the conv window too, so it leaves the full
    support unchanged; silencing the conv paths (projection BN scale and shift
    set to 0, so the block outputs its cropped input) exposes where each skip
    reads from: centred crops keep the remaining support centred in the mapped
    box, corner crops shift it up and left.
    """
    k = (63, 95, 111)[branch]
    model = AnchorNet(num_classes=4).double().eval()
    model.load_state_dict(rf_model.state_dict())
    residual_blocks = [b for b in model.modules() if isinstance(b, Bneck) and b.has_residual]
    assert residual_blocks
    with torch.no_grad():
        for block in residual_blocks:
            projection_bn = [m for m in block.block.modules() if isinstance(m, nn.BatchNorm2d)][-1]
            projection_bn.weight.zero_()
            projection_bn.bias.zero_()
    locations = _locations(PAPER_MAP_SIZES[k])
    for (r, c), support in zip(locations, _input_support(model, branch, locations)):
        x0, y0, x1, y1 = _bounding_box(support)
        assert torch.equal(support, _box_mask(x0, y0, x1, y1)), "support is not a solid box"
        margins = (x0 - 8 * c, 8 * c + k - x1, y0 - 8 * r, 8 * r + k - y1)
        assert margins[0] == margins[1] == margins[2] == margins[3], (
            f"B{k} ({r}, {c}): skip-only support {(x0, y0, x1, y1)} is not centred in the box "
            f"{(8 * c, 8 * r, 8 * c + k, 8 * r + k)} (margins left, right, top, bottom = {margins})"
        )
        assert min(margins) > 0, f"B{k} ({r}, {c}): silencing residual paths should shrink the support"


def _bneck_parameters(in_channels: int, kernel: int, expansion: int, out: int, se: bool) -> int:
    """Parameters of one bneck row by hand: convs have no bias (BN follows, 2 per channel); SE convs have biases."""
    count = 0
    if expansion != in_channels:
        count += in_channels * expansion + 2 * expansion  # 1x1 expansion + BN
    count += expansion * kernel * kernel + 2 * expansion  # depthwise + BN
    if se:
        squeezed = in_channels // 4  # docs/method.md §1: block input // 4
        count += expansion * squeezed + squeezed + squeezed * expansion + expansion
    return count + expansion * out + 2 * out  # linear 1x1 projection + BN


def test_parameter_count_from_tables_1_and_2_by_hand():
    classes = 1000
    # Table 1: stem conv 3x3 3 -> 16 (+ BN), then the rows (kernel, exp, out, SE) from 16 channels.
    head_rows = [
        (3, 16, 16, False),
        (3, 72, 24, False),
        (1, 88, 24, False),
        (1, 96, 40, True),
        (1, 240, 40, True),
        (1, 240, 40, True),
        (1, 120, 48, True),
        (3, 144, 48, True),
        (3, 288, 96, True),
    ]
    expected, channels = 3 * 16 * 9 + 2 * 16, 16
    for kernel, expansion, out, se in head_rows:
        expected += _bneck_parameters(channels, kernel, expansion, out, se)
        channels = out
    # Table 2, per branch: two rows from 96 channels, the 1x1 classifier 96 -> C (with bias), the attention
    # branch's bneck 1x1 (192, SE), its 1x1 location score conv 96 -> 1 (no bias) and the auxiliary FC 96 -> C.
    attention = _bneck_parameters(96, 1, 192, 96, True) + 96 + (96 * classes + classes)
    for kernels in ((3, 1), (3, 5), (5, 5)):
        expected += _bneck_parameters(96, kernels[0], 480, 96, True) + _bneck_parameters(96, kernels[1], 576, 96, True)
        expected += 96 * classes + classes + attention
    model = AnchorNet(num_classes=classes)
    total = sum(p.numel() for p in model.parameters())
    assert total == expected
    aux = 3 * (96 * classes + classes)
    # The paper says 1.6 M; this count is 1.71 M with the auxiliary FCs and 1.42 M without (docs/method.md §1).
    assert total == 1_706_436 and total - aux == 1_415_436


def test_multiply_adds_match_the_paper():
    model = AnchorNet(num_classes=1000, pooling="gap")
    macs = count_multiply_adds(model, input_size=224)
    assert abs(macs - 0.5e9) <= 0.15 * 0.5e9, f"{macs} multiply-adds, the paper says 0.5 G"
    # By hand: the stem conv gives 111 x 111 x 16 outputs of 3 x 3 x 3 multiply-adds.
    assert count_multiply_adds(model.stem, input_size=224) == 111 * 111 * 16 * 27 == 5_322_672
    # By hand: only the three 1x1 classifier convs (96 inputs each) depend on the class count.
    one_class = count_multiply_adds(AnchorNet(num_classes=1, pooling="gap"), input_size=224)
    assert macs - one_class == 96 * 999 * (21 * 21 + 17 * 17 + 15 * 15)


def test_training_outputs_and_backward():
    torch.manual_seed(0)
    model = AnchorNet(num_classes=5).train()
    outputs = model.training_outputs(torch.randn(2, 3, 128, 128))
    logits = (outputs.attention_logits, outputs.gap_logits, outputs.aux_logits)
    assert [tuple(t.shape) for t in logits] == [(2, 3, 5)] * 3
    # 128 input: maps of (128 - k) / 8 + 1 cells for k = 63, 95, 111
    assert [tuple(m.shape) for m in outputs.logit_maps] == [(2, 5, 9, 9), (2, 5, 5, 5), (2, 5, 3, 3)]
    assert [tuple(m.shape) for m in outputs.attention_maps] == [(2, 1, 9, 9), (2, 1, 5, 5), (2, 1, 3, 3)]
    labels = torch.tensor([1, 4])
    loss = sum(nn.functional.cross_entropy(branch_logits[:, j], labels) for branch_logits in logits for j in range(3))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_training_logits_agree_with_inference_probabilities():
    torch.manual_seed(0)
    image = torch.randn(1, 3, 224, 224)
    model = AnchorNet(num_classes=6).eval()
    with torch.no_grad():
        outputs = model.training_outputs(image)
        gap_probs = model(image)[0]
        model.pooling = "attention"
        attention_probs = model(image)[0]
    torch.testing.assert_close(outputs.gap_logits.softmax(-1), gap_probs)
    torch.testing.assert_close(outputs.attention_logits.softmax(-1), attention_probs)


@pytest.mark.parametrize("kwargs", [{"pooling": "max"}, {"pooling": "GAP"}, {"num_classes": 0}, {"num_classes": -3}])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="pooling|num_classes"):
        AnchorNet(**kwargs)


def test_count_multiply_adds_restores_training_mode():
    model = AnchorNet(num_classes=2).train()
    count_multiply_adds(model, input_size=128)
    assert model.training


def test_attention_pooling_reads_the_logit_map_where_s_puts_its_weight():
    # With S all on one cell, the attention output is softmax(F at that cell); GAP would be softmax(mean of F).
    class OneCell(nn.Module):
        def forward(self, features):
            s = torch.zeros(features.shape[0], 1, *features.shape[2:])
            s[:, :, 2, 3] = 1.0
            return s, features.mean((2, 3))

    torch.manual_seed(0)
    model = AnchorNet(num_classes=6, pooling="attention").eval()
    for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):  # spread like a trained network's
        norm.running_var.uniform_(0.05, 0.55)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.normal_(0.0, 0.2)
    for branch in model.branches:
        nn.init.normal_(branch.classifier.weight, std=2.0)
        branch.attention = OneCell()
    image = torch.zeros(1, 3, 224, 224)
    image[:, :, 40:100, 120:200] = 3.0
    with torch.no_grad():
        probs, *maps = model(image)
    for b, f in enumerate(maps[:3]):
        torch.testing.assert_close(probs[:, b], f[:, :, 2, 3].softmax(1))
        assert (probs[:, b] - f.mean((2, 3)).softmax(1)).abs().max() > 1e-3, "flat maps: the test proves nothing"


def test_a_data_parallel_checkpoint_loads_and_another_networks_is_a_one_line_error(tmp_path):
    from anchor_edge.errors import InputError
    from export.models.loading import load_anchornet

    torch.manual_seed(0)
    model = AnchorNet(num_classes=4)
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "dp.pt")  # no recorded classes
    loaded = load_anchornet(tmp_path / "dp.pt", None, None)
    assert loaded.module.num_classes == 4
    assert torch.equal(loaded.module.state_dict()["branches.0.classifier.weight"], model.branches[0].classifier.weight)
    torch.save(nn.Linear(2, 3).state_dict(), tmp_path / "other.pt")  # say, a downstream's weights by mistake
    with pytest.raises(InputError, match=r"other\.pt is not an AnchorNet checkpoint .*give the file export\.train"):
        load_anchornet(tmp_path / "other.pt", None, None)
