"""The PyTorch classifiers of the MNIST evidence (docs/EVIDENCE.md), and
their dense training.

    python3 mnist_models.py --class MnistCNN --train train.csv --epochs 3 \\
        --seed 0 --out baseline.safetensors

trains the class from scratch on train.csv (a header, the "label" column
holding the digit, the other 784 columns the pixels 0..255 row by row) and
writes its state_dict as safetensors (strata_torch.save_safetensors), the
checkpoint `strata convert` reads. examples/pytorch/finetune_loop.py builds
the same classes (--model-class mnist_models.py:MnistCNN) to fine-tune
their S + R conversion next to the equal-budget control.

Both read the raw pixels and scale them by 1/255 themselves, so the ONNX
files strata validate reads take the CSV's columns as they are.

  MnistCNN          [N, 1, 28, 28]: conv1 3x3 1->16 (padding 1), ReLU, 2x2
                    max pool, conv2 3x3 16->32 (padding 1), ReLU, 2x2 max
                    pool, fc 1568->256, ReLU, head 256->10
  MnistTransformer  the image as 28 tokens of 28 pixels [N, 28, 28]: embed
                    28->64, a learned position table [1, 28, 64], one
                    nn.TransformerEncoderLayer (d 64, 4 heads, ff 256, no
                    dropout, batch_first), mean over tokens, head 64->10

The training is the loop of finetune_loop.py (Adam at lr 1e-3 on the mean
cross-entropy, shuffled batches of 64 in the order the seed gives), one
thread and deterministic algorithms: the same inputs give the same bytes.
"""

import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pytorch"))
import finetune_loop as loop  # noqa: E402
import strata_torch as st  # noqa: E402

CLASSES = 10


class MnistCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 7 * 7, 256)
        self.head = nn.Linear(256, CLASSES)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x / 255.0)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return self.head(F.relu(self.fc(torch.flatten(h, 1))))


class MnistTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(28, 64)
        self.pos = nn.Parameter(torch.zeros(1, 28, 64))
        self.encoder = nn.TransformerEncoderLayer(
            d_model=64, nhead=4, dim_feedforward=256, dropout=0.0, batch_first=True)
        self.head = nn.Linear(64, CLASSES)

    def forward(self, x):
        h = self.encoder(self.embed(x / 255.0) + self.pos)
        return self.head(h.mean(dim=1))


SHAPES = {"MnistCNN": [1, 28, 28], "MnistTransformer": [28, 28]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--class", dest="cls", required=True, choices=sorted(SHAPES))
    p.add_argument("--train", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="the state_dict as safetensors")
    args = p.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x, y = loop.read_csv(args.train, "label", SHAPES[args.cls])
    torch.manual_seed(args.seed)
    model = globals()[args.cls]()
    losses = loop.train(model, x, y, args.epochs, 64, args.lr, args.seed)
    tmp = args.out + ".tmp"
    st.save_safetensors(tmp, {k: v.detach().contiguous() for k, v in model.state_dict().items()})
    os.replace(tmp, args.out)
    print(f"{args.cls}: epochs {args.epochs}, train loss per epoch {['%.4f' % v for v in losses]}")


if __name__ == "__main__":
    main()
