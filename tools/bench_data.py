"""Images per second of netdef's image pipeline against a hand-written PIL + torch DataLoader twin doing
the same AlexNet-style work, in one run, with the same number of worker processes.

    python tools/bench_data.py [--images 512] [--epochs 2] [--workers N] [--device cpu|cuda] [--folder DIR]

Both sides turn JPEG files (generated 500x375 photos-like images, or --folder) into training batches of
64: shorter side resized to 256, a random 224x224 crop, a random mirror, mean subtraction, AlexNet's PCA
lighting noise, a scale, as float32 N x 3 x 224 x 224 on --device.

twin     per sample in the workers: PIL decode, resize (shorter side 256, bilinear), random crop of the
         full resized image, random flip, to float, mean, lighting with its own alpha, scale; the default
         collate stacks the floats; the batch is copied to the device.
netdef   ImageData reading the file that tools/convert_imageset.py packs once (shorter side 256, central
         256x256 square kept, uint8): workers only copy uint8 rows out of the memory-mapped file; crop,
         mirror, mean, lighting and scale run batched on the device (in_memory: NEVER, the big-data path).
Throughput is measured after each side's first batch. Also shown: the packing time, netdef decoding the JPEGs every epoch (no packed file), and the packed
set held in memory (in_memory: ALWAYS, the small-data default).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netdef.api import load_graph  # noqa: E402
from netdef.data.images import Geometry, default_workers, folder_samples, image_size, write_packed  # noqa: E402

BATCH, SHORTER, CROP = 64, 256, 224
MEAN = (104.0, 117.0, 123.0)
EIGVAL = (55.46, 4.794, 1.148)  # ImageNet's, on the 0-255 scale (fb.resnet.torch's values x 255)
EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
SCALE = 1 / 58.0


def make_jpegs(folder: Path, count: int) -> None:
    """Smooth random images (upsampled noise, so JPEG sizes are photo-like), two classes."""
    rng = np.random.default_rng(0)
    for k in range(count):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
        target = folder / f"class{k % 2}"
        target.mkdir(parents=True, exist_ok=True)
        image.save(target / f"{k:05d}.jpg", quality=90)


class TwinDataset(torch.utils.data.Dataset):
    """The standard per-sample PIL pipeline (as torchvision's Resize, RandomCrop, RandomHorizontalFlip,
    Normalize and AlexNet's Lighting do it), written out."""

    def __init__(self, samples):
        self.samples = samples
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.lighting = torch.tensor(EIGVEC).T * torch.tensor(EIGVAL)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        sample = self.samples[index]
        with Image.open(sample.path) as image:
            image = image.convert("RGB")
            width, height = image.size
            factor = SHORTER / min(width, height)
            image = image.resize((round(width * factor), round(height * factor)), Image.BILINEAR)
        width, height = image.size
        left, top = random.randint(0, width - CROP), random.randint(0, height - CROP)
        image = image.crop((left, top, left + CROP, top + CROP))
        if random.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
        shift = self.lighting @ (torch.randn(3) * 0.1)
        return (x - self.mean + shift.view(3, 1, 1)) * SCALE, sample.label


def run_twin(samples, workers, epochs, device) -> float:
    loader = torch.utils.data.DataLoader(TwinDataset(samples), batch_size=BATCH, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", drop_last=True)
    batches = (images.to(device, non_blocking=True) for _ in range(epochs) for images, _ in loader)
    return images_per_second(batches, device)


def run_netdef(folder: Path, source: str, mode: str, workers: int, epochs: int, device, total: int) -> float:
    net = folder / f"bench_{mode}.yaml"
    net.write_text(f"""
name: bench
layers:
  - name: data
    type: ImageData
    top: [data, label]
    image_data_param: {{source: {source}, batch_size: {BATCH}, shuffle: true, resize_shorter: {0 if source.endswith('.h5') else SHORTER},
                        num_workers: {workers}, in_memory: {mode}, channel_order: RGB}}
    transform_param: {{crop_size: {CROP}, mirror: true, mean_value: {list(MEAN)}, scale: {SCALE},
                      pca_eigval: {list(EIGVAL)}, pca_eigvec: {[list(v) for v in EIGVEC]}}}
""")
    reader = load_graph(net).layers[0].impl.reader("TRAIN", 1, device)
    return images_per_second((reader.next()[0] for _ in range(epochs * (total // BATCH))), device)


def images_per_second(batches, device) -> float:
    """Throughput after the first batch, so that worker start-up and first-touch allocations (which
    either side pays once per run) do not count."""
    next(batches)
    synchronize(device)
    count, start = 0, time.perf_counter()
    for images in batches:
        count += images.shape[0]
    synchronize(device)
    return count / (time.perf_counter() - start)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="JPEGs to generate (default 512)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=default_workers(), help="worker processes, both sides")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--folder", type=Path, help="a folder of class folders of JPEGs to use instead")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    random.seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder = args.folder or scratch / "jpegs"
        if args.folder is None:
            make_jpegs(folder, args.images)
        samples = folder_samples(folder)[0]
        total = len(samples) - len(samples) % BATCH
        print(f"{len(samples)} JPEGs ({'x'.join(map(str, image_size(samples[0].path)))}), batches of {BATCH}, "
              f"{args.epochs} epochs, {args.workers} workers, device {device}, {torch.get_num_threads()} torch threads")
        start = time.perf_counter()
        write_packed(scratch / "packed.h5", samples, Geometry(resize_shorter=SHORTER, bgr=False),
                     (3, SHORTER, SHORTER), workers=args.workers, log=lambda line: None)
        pack = time.perf_counter() - start
        twin = run_twin(samples, args.workers, args.epochs, device)
        packed = run_netdef(scratch, str(scratch / "packed.h5"), "NEVER", args.workers, args.epochs, device, total)
        jpeg = run_netdef(scratch, str(folder), "NEVER", args.workers, args.epochs, device, total)
        memory = run_netdef(scratch, str(scratch / "packed.h5"), "ALWAYS", args.workers, args.epochs, device, total)
    print(f"packing once (convert_imageset): {pack:.1f} s ({len(samples) / pack:.0f} images/s)")
    print(f"twin   PIL + DataLoader, per-sample transforms: {twin:8.0f} images/s")
    print(f"netdef packed file, streamed (in_memory NEVER):  {packed:8.0f} images/s  ratio {packed / twin:.2f}")
    print(f"netdef JPEGs decoded every epoch:               {jpeg:8.0f} images/s  ratio {jpeg / twin:.2f}")
    print(f"netdef packed file held in memory:              {memory:8.0f} images/s  ratio {memory / twin:.2f}")
    return 0 if packed >= twin else 1


if __name__ == "__main__":
    sys.exit(main())
