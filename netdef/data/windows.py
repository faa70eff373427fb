"""R-CNN's window files and the batches Caffe's WindowData layer cuts from them (window_data_layer.cpp).

A window file repeats, for each image:

    # IMAGE_INDEX
    IMAGE_PATH            (appended to root_folder)
    CHANNELS
    HEIGHT
    WIDTH
    NUM_WINDOWS
    CLASS OVERLAP X1 Y1 X2 Y2     (NUM_WINDOWS lines; corners inclusive, 0-based pixels)

Windows whose overlap with a ground-truth box is at least fg_threshold are foreground (their class must be
> 0), those below bg_threshold background (class and overlap forced to 0); the others are not used. Each
batch holds batch_size - int(batch_size * fg_fraction) background windows, then the foreground ones, each
drawn uniformly from its list, mirrored at random with `mirror`, cut out (enlarged by context_pad pixels
of context on each side of the warped crop, or to the tightest square with crop_mode square), warped to
crop_size x crop_size with bilinear interpolation, then (pixel - mean) * scale (the mean per channel, or a
mean image's central crop at the pixel's place); the rest of the crop is 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NetdefError, Pos, Problem


@dataclass
class Window:
    image: int  # index into WindowFile.images
    label: int
    overlap: float
    box: tuple  # x1, y1, x2, y2, inclusive


@dataclass
class WindowFile:
    images: list = field(default_factory=list)  # (path, (channels, height, width))
    foreground: list = field(default_factory=list)
    background: list = field(default_factory=list)


class _Tokens:
    """The file's whitespace-separated tokens with their line numbers (Caffe reads it with >>)."""

    def __init__(self, path: Path):
        self.path = path
        self.items = [(token, number) for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                      for token in line.split()]
        self.index = 0

    def more(self) -> bool:
        return self.index < len(self.items)

    def take(self, kind, what: str):
        if not self.more():
            raise self.error(f"the window file ends where {what} was expected", self.items[-1][1] if self.items else 1)
        token, line = self.items[self.index]
        self.index += 1
        try:
            return kind(token)
        except ValueError:
            raise self.error(f"{what} must be {'an integer' if kind is int else 'a number'}", line, found=token) from None

    def error(self, message, line, **kw) -> NetdefError:
        return NetdefError(Problem(message, Pos(str(self.path), line, 1), **kw))


def read_windows(path: Path, root_folder: str, fg_threshold: float, bg_threshold: float) -> WindowFile:
    """Parse a window file into its images and foreground and background windows; errors name its line."""
    tokens = _Tokens(path)
    windows = WindowFile()
    if not tokens.more():
        raise tokens.error("the window file is empty", 1, expected="# IMAGE_INDEX blocks")
    while tokens.more():
        line = tokens.items[tokens.index][1]
        if tokens.take(str, "'#'") != "#":
            raise tokens.error("each image of a window file starts with '# IMAGE_INDEX'", line,
                               found=tokens.items[tokens.index - 1][0])
        tokens.take(int, "the image index")
        image_path = tokens.take(str, "the image path")
        size = tuple(tokens.take(int, what) for what in ("the channels", "the height", "the width"))
        windows.images.append((root_folder + image_path, size))
        for _ in range(tokens.take(int, "the number of windows")):
            line = tokens.items[tokens.index][1] if tokens.more() else line
            label, overlap = tokens.take(int, "a window's class"), tokens.take(float, "a window's overlap")
            box = tuple(tokens.take(int, f"a window's {corner}") for corner in ("x1", "y1", "x2", "y2"))
            if overlap >= fg_threshold:
                if label <= 0:
                    raise tokens.error("a foreground window (overlap >= fg_threshold) needs a class > 0", line,
                                       found=str(label))
                windows.foreground.append(Window(len(windows.images) - 1, label, overlap, box))
            elif overlap < bg_threshold:
                windows.background.append(Window(len(windows.images) - 1, 0, 0.0, box))
    for kind in ("foreground", "background"):
        if not getattr(windows, kind):
            raise tokens.error(f"the window file has no {kind} windows (WindowData draws both)", 1)
    return windows


def _round(value: float) -> int:
    """C's round(): halves away from zero."""
    return int(np.sign(value) * np.floor(abs(value) + 0.5))


def warp_window(image: np.ndarray, box: tuple, crop_size: int, context_pad: int, square: bool, mirror: bool):
    """Caffe's cut of one window: (the warped crop as float32 C x h x w, its offset (pad_h, pad_w) in the
    crop_size x crop_size output)."""
    import torch
    import torch.nn.functional as F
    height, width = image.shape[1:]
    x1, y1, x2, y2 = box
    pad_h = pad_w = 0
    out_h = out_w = crop_size
    if context_pad > 0 or square:
        context_scale = crop_size / (crop_size - 2 * context_pad)
        half_h, half_w = (y2 - y1 + 1) / 2.0, (x2 - x1 + 1) / 2.0
        centre_x, centre_y = x1 + half_w, y1 + half_h
        if square:
            half_h = half_w = max(half_h, half_w)
        x1, x2 = _round(centre_x - half_w * context_scale), _round(centre_x + half_w * context_scale)
        y1, y2 = _round(centre_y - half_h * context_scale), _round(centre_y + half_h * context_scale)
        unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
        pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
        pad_x2, pad_y2 = max(0, x2 - width + 1), max(0, y2 - height + 1)
        x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
        scale_x, scale_y = crop_size / unclipped_w, crop_size / unclipped_h
        out_w, out_h = _round((x2 - x1 + 1) * scale_x), _round((y2 - y1 + 1) * scale_y)
        pad_h = _round(pad_y1 * scale_y)
        pad_w = _round((pad_x2 if mirror else pad_x1) * scale_x)  # a mirrored crop mirrors its padding too
        out_h, out_w = min(out_h, crop_size - pad_h), min(out_w, crop_size - pad_w)
    region = torch.from_numpy(np.ascontiguousarray(image[:, y1:y2 + 1, x1:x2 + 1])).float()
    warped = F.interpolate(region[None], size=(out_h, out_w), mode="bilinear", align_corners=False)[0]
    warped = warped.round().clamp(0, 255)  # OpenCV resizes into the uint8 image
    if mirror:
        warped = warped.flip(-1)
    return warped, (pad_h, pad_w)


class WindowReader:
    """Serves WindowData batches (data N x C x crop x crop float32, labels N); its generator is its state."""

    def __init__(self, windows: WindowFile, *, batch_size, crop_size, context_pad, square, mirror, fg_fraction,
                 scale, mean, seed, device):
        import torch
        self.windows, self.batch_size, self.crop_size = windows, batch_size, crop_size
        self.context_pad, self.square, self.mirror, self.scale, self.device = context_pad, square, mirror, scale, device
        # values per channel, or a mean image's crop (C x crop x crop), read where each window lands
        mean = torch.as_tensor(np.asarray(mean if mean is not None and len(mean) else [0.0], dtype=np.float32))
        self.mean_image = mean.dim() == 3
        self.mean = mean if self.mean_image else mean.reshape(-1, 1, 1)
        self.foreground_count = int(batch_size * fg_fraction)
        self.generator = torch.Generator().manual_seed(seed)
        self.cache: dict = {}

    def _image(self, index) -> np.ndarray:
        from .images import Geometry, decode
        if index not in self.cache:
            path, _ = self.windows.images[index]
            try:
                self.cache[index] = decode(Path(path), Geometry())
            except (OSError, ValueError) as exc:
                raise NetdefError(Problem(f"cannot read window image {path}: {exc}")) from None
        return self.cache[index]

    def _draw(self, count) -> int:
        import torch
        return int(torch.randint(count, (), generator=self.generator))

    def next(self) -> list:
        import torch
        channels = self.windows.images[0][1][0]
        data = torch.zeros(self.batch_size, channels, self.crop_size, self.crop_size)
        labels = torch.zeros(self.batch_size)
        kinds = [self.windows.background] * (self.batch_size - self.foreground_count) + \
                [self.windows.foreground] * self.foreground_count
        for item, kind in enumerate(kinds):
            window = kind[self._draw(len(kind))]
            mirror = self.mirror and self._draw(2) == 1
            warped, (top, left) = warp_window(self._image(window.image), window.box, self.crop_size,
                                              self.context_pad, self.square, mirror)
            h, w = warped.shape[1:]
            mean = self.mean[:, top:top + h, left:left + w] if self.mean_image else self.mean
            data[item, :, top:top + h, left:left + w] = (warped - mean) * self.scale
            labels[item] = window.label
        return [data.to(self.device), labels.to(self.device)]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
