"""Printed values of the topic ``cnn-architectures``."""

from ..documents import UNIVERSITY_MODULE
from ..registry import Claim

T = "cnn-architectures"
ALEXNET = "AlexNet – Deep Learning Architecture that popularized CNN"
ALEXNET_2 = "2. AlexNet"
ALEXNET_TABLE = ALEXNET_2 + ": Summary of Fully Connected and Dropout layers in AlexNet (table)"
VGG = "VGGNet – CNN Architecture with Large Filters"
VGG_LAYERS = VGG + ": Architecture of VGGNet"
MILLIONS = "a round figure in millions: read as 55 to 65 million"

CLAIMS = [
    # --- AlexNet ---------------------------------------------------------------------------------------
    Claim(id="cnn-architectures.alexnet-layers", topic=T, document=UNIVERSITY_MODULE, section=ALEXNET,
          printed="5 convolutional layers, 3 fully connected layers, 2 dropout layers",
          quote="AlexNet is composed of 5 convolutional layers with a combination of max-pooling layers, 3 fully "
                "connected layers, and 2 dropout layers.",
          note="Conv2D, Dense and Dropout layers of the toolkit's zoo.alexnet"),
    Claim(id="cnn-architectures.alexnet-params", topic=T, document=UNIVERSITY_MODULE, section=ALEXNET,
          printed="around 60 million",
          quote="The total number of parameters in this architecture is around 60 million.",
          tolerance=5.0, tolerance_note=MILLIONS,
          note="millions of parameters of zoo.alexnet: one tower, as torchvision and most Keras versions"),
    Claim(id="cnn-architectures.alexnet-params-two-gpus", topic=T, document=UNIVERSITY_MODULE, section=ALEXNET_2,
          printed="60 million", quote="AlexNet overall has 60 million parameters.", tolerance=5.0,
          tolerance_note=MILLIONS,
          note="millions of parameters of the paper's two-GPU AlexNet: conv2, conv4 and conv5 each split into "
               "two halves that see only their own GPU's maps"),
    Claim(id="cnn-architectures.alexnet-dropout1", topic=T, document=UNIVERSITY_MODULE, section=ALEXNET_TABLE,
          printed=r"$6 \times 6 \times 256$", quote="$6 \\times 6 \\times 256$\t-",
          note="row 'Dropout 1': the volume it receives, pool5's output (zoo.alexnet flattens it first)"),
    Claim(id="cnn-architectures.alexnet-fc1", topic=T, document=UNIVERSITY_MODULE, section=ALEXNET_TABLE,
          printed="4096", quote="4096\tReLU", note="row 'Fully Connected 1'"),
    Claim(id="cnn-architectures.alexnet-dropout2", topic=T, document=UNIVERSITY_MODULE, section=ALEXNET_TABLE,
          printed="4096", quote="4096\t-\nFully Connected 2", note="row 'Dropout 2'"),
    Claim(id="cnn-architectures.alexnet-fc2", topic=T, document=UNIVERSITY_MODULE, section=ALEXNET_TABLE,
          printed="4096", quote="4096\tReLU\nFully Connected 3", note="row 'Fully Connected 2'"),
    Claim(id="cnn-architectures.alexnet-fc3", topic=T, document=UNIVERSITY_MODULE, section=ALEXNET_TABLE,
          printed="1004", quote="1004\tSoltmax", note="row 'Fully Connected 3'",
          reason="a typo (like 'Soltmax' for softmax in the same cell): AlexNet's last layer has one unit per "
                 "ImageNet (ILSVRC) class, 1000, as the notes themselves say of ZFNet's last layer ('a Dense "
                 "layer of 1000 neurons i.e., the number of classes in ImageNet')."),
    # --- VGG16 -----------------------------------------------------------------------------------------
    Claim(id="cnn-architectures.vgg16-weight-layers", topic=T, document=UNIVERSITY_MODULE, section=VGG,
          printed="16 layers", quote="The “16” in the name indicates that the model contains 16 layers that have "
                                     "weights; this includes convolutional layers as well as fully connected layers.",
          note="layers of zoo.vgg16 (Keras' VGG16) with parameters: 13 convolutions and 3 dense layers"),
    Claim(id="cnn-architectures.vgg16-params", topic=T, document=UNIVERSITY_MODULE, section=VGG,
          printed="up to 95 million",
          quote="VGGNet is a 16-layer CNN with up to 95 million parameters and trained on over one billion images "
                "(1000 classes).",
          reason="VGG16 has 138,357,544 parameters (Keras' keras.applications.VGG16 with its 1000-class top, "
                 "counted by the toolkit's zoo.vgg16), far above 'up to 95 million'; the first dense layer "
                 "alone (7·7·512 inputs to 4096 units) holds about 103 million. No VGG configuration of the "
                 "paper is that small: the table below counts VGG11 to VGG19, all above 130 million."),
    Claim(id="cnn-architectures.vgg16-block1", topic=T, document=UNIVERSITY_MODULE, section=VGG_LAYERS,
          printed=r"$224 \times 224 \times 64$",
          quote=r"first two layers use 64 filters that results in $224 \times 224 \times 64$ volume as same "
                r"convolutions are used."),
    Claim(id="cnn-architectures.vgg16-pool1", topic=T, document=UNIVERSITY_MODULE, section=VGG_LAYERS,
          printed=r"$112 \times 112 \times 64$",
          quote=r"reduces height and width of a volume from $224 \times 224 \times 64$ to $112 \times 112 \times 64$."),
    Claim(id="cnn-architectures.vgg16-block2", topic=T, document=UNIVERSITY_MODULE, section=VGG_LAYERS,
          printed=r"$112 \times 112 \times 128$",
          quote=r"This results in the new dimension of $112 \times 112 \times 128$."),
    Claim(id="cnn-architectures.vgg16-pool2", topic=T, document=UNIVERSITY_MODULE, section=VGG_LAYERS,
          printed=r"$56 \times 56 \times 128$",
          quote=r"After pooling layer is used, volume is reduced to $56 \times 56 \times 128$."),
    Claim(id="cnn-architectures.vgg16-pool3", topic=T, document=UNIVERSITY_MODULE, section=VGG_LAYERS,
          printed=r"$28 \times 28 \times 256$",
          quote=r"Two more convolution layers are added with 256 filters each followed by down sampling layer that "
                r"reduces the size to $28 \times 28 \times 256$.",
          note="the volume is right; VGG16's third block has three 256-filter convolutions, not two"),
    Claim(id="cnn-architectures.vgg16-pool5", topic=T, document=UNIVERSITY_MODULE, section=VGG_LAYERS,
          printed=r"$7 \times 7 \times 512$",
          quote=r"After the final pooling layer, $7 \times 7 \times 512$ volume is flattened"),
    Claim(id="cnn-architectures.vgg16-top", topic=T, document=UNIVERSITY_MODULE, section=VGG_LAYERS,
          printed="4096 channels and softmax output of 1000 classes",
          quote="Fully Connected (F(C) layer with 4096 channels and softmax output of 1000 classes.",
          note="units of the first dense layer and of the softmax output"),
]
