"""Helpers of tests/data: write tiny image/mask files of any format (pillow / tifffile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_image(path: Path, arr: np.ndarray, **kwargs) -> Path:
    """Write ``arr`` to ``path`` in the format its extension names (pillow; tifffile for TIFF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, arr, **kwargs)
        return path
    from PIL import Image

    if arr.dtype == np.uint16:
        img = Image.fromarray(arr)  # mode I;16
    else:
        img = Image.fromarray(arr)
    img.save(path, **kwargs)
    return path


def blobs(
    n: int, size: tuple[int, int] = (32, 32), num_classes: int = 2, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` uint8 grey images and matching class-id masks (rectangles of class
    1..num_classes-1)."""
    rng = np.random.default_rng(seed)
    h, w = size
    images, masks = [], []
    for _i in range(n):
        mask = np.zeros((h, w), np.uint8)
        for cls in range(1, num_classes):
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            mask[y0:y0 + h // 3, x0:x0 + w // 3] = cls
        image = (rng.integers(0, 60, (h, w)) + 60 * mask).clip(0, 255).astype(np.uint8)
        images.append(image)
        masks.append(mask)
    return images, masks


# ---------------------------------------------------------------------------------------------
# Data sets laid out as they are downloaded (tiny): each writer returns the folder to give as
# data.source and the exact share of each class among labelled pixels.


def write_drive(
    root: Path, n: int = 4, size: tuple[int, int] = (40, 48)
) -> tuple[Path, list[float]]:
    """DRIVE-like retinal layout: ``training/images/21_training.tif`` (RGB, LZW TIFF written by
    Pillow), ``training/mask/21_training_mask.gif`` (field-of-view masks, nearly the same for every
    image) and ``training/1st_manual/21_manual1.gif`` (the labels: a vertical vessel 4 pixels
    wide)."""
    from PIL import Image

    h, w = size
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(1)
    for i in range(n):
        number = 21 + i
        image = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
        label = np.zeros((h, w), np.uint8)
        label[:, 4 + 8 * i:8 + 8 * i] = 255
        image[label > 0] += 100
        fov = (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (0.45 * w) ** 2).astype(np.uint8) * 255
        fov[0, i] = 255 - fov[0, i]  # nearly, not exactly, the same mask for every image
        for sub in ("images", "mask", "1st_manual"):
            (root / "training" / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(
            root / "training" / "images" / f"{number}_training.tif", compression="tiff_lzw"
        )
        Image.fromarray(fov).save(root / "training" / "mask" / f"{number}_training_mask.gif")
        Image.fromarray(label).save(root / "training" / "1st_manual" / f"{number}_manual1.gif")
    return root, [1 - 4 / w, 4 / w]


def write_crack(root: Path, n: int = 4, size: tuple[int, int] = (24, 32), *, v73: bool = False,
                boundaries: bool = True, extra_image: bool = True) -> tuple[Path, list[float]]:
    """CRACK500-like: ``images/*.jpg`` and ``groundTruth/*.mat`` holding a struct ``groundTruth``
    with ``Segmentation`` (1 = background, 2 = crack: 3 rows) and, with ``boundaries``,
    ``Boundaries`` too.
    ``v73`` writes MATLAB v7.3 files (HDF5 with a 512-byte user block, arrays stored transposed);
    ``extra_image`` adds an image without a .mat file."""
    h, w = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "groundTruth").mkdir(parents=True, exist_ok=True)
    for i in range(n + (1 if extra_image else 0)):
        seg = np.ones((h, w), np.uint8)
        seg[3 + 4 * i:6 + 4 * i, :] = 2
        image = np.where(seg == 2, 40, 200).astype(np.uint8)
        write_image(root / "images" / f"crack_{i}.jpg", np.stack([image] * 3, -1), quality=95)
        if i == n:
            break  # the extra image has no label
        edge = (np.abs(np.diff(seg.astype(int), axis=0, prepend=1)) > 0).astype(np.uint8)
        path = root / "groundTruth" / f"crack_{i}.mat"
        if v73:
            import h5py

            with h5py.File(path, "w", userblock_size=512) as f:
                group = f.create_group("groundTruth")
                group.attrs["MATLAB_class"] = np.bytes_("struct")
                ds = group.create_dataset("Segmentation", data=seg.T)  # MATLAB is column-major
                ds.attrs["MATLAB_class"] = np.bytes_("uint8")
                if boundaries:
                    group.create_dataset("Boundaries", data=edge.T).attrs["MATLAB_class"] = (
                        np.bytes_("logical")
                    )
                name = f.create_dataset(
                    "name", data=np.frombuffer(b"crack", np.uint8).astype(np.uint16)[:, None]
                )
                name.attrs["MATLAB_class"] = np.bytes_("char")
            with open(path, "r+b") as fh:  # MATLAB's header in the user block
                fh.write(
                    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: segsearch test".ljust(116)
                )
        else:
            import scipy.io

            truth = {"Segmentation": seg}
            if boundaries:
                truth["Boundaries"] = edge
            scipy.io.savemat(path, {"groundTruth": truth, "name": "crack"})
    return root, [1 - 3 / h, 3 / h]


def write_cases(
    root: Path, n: int = 4, size: tuple[int, int] = (32, 32)
) -> tuple[Path, list[float]]:
    """Data Science Bowl 2018 layout: ``stage1_train/<id>/images/<id>.png`` (RGBA) and
    ``stage1_train/<id>/masks/*.png``, one 0/255 mask per object (two 4x4 squares that overlap in
    2x4 pixels, and a 6x6 one: 24 + 36 = 60 foreground pixels); one more case has no masks/
    folder."""
    h, w = size
    base = root / "stage1_train"
    for i in range(n + 1):
        case = base / f"case{i:02d}"
        image = np.zeros((h, w, 4), np.uint8)
        image[..., 3] = 255
        objects = [(2 + i, 2, 4), (4 + i, 2, 4), (20, 10 + i, 6)]  # (row, col, side)
        merged = np.zeros((h, w), bool)
        for k, (r, c, side) in enumerate(objects):
            obj = np.zeros((h, w), np.uint8)
            obj[r:r + side, c:c + side] = 255
            merged |= obj > 0
            if i < n:
                write_image(case / "masks" / f"obj{k}.png", obj)
        image[merged, :3] = 200
        write_image(case / "images" / f"case{i:02d}.png", image)
    return base, [1 - 60 / (h * w), 60 / (h * w)]


def write_colour(
    root: Path, n: int = 4, size: tuple[int, int] = (32, 32)
) -> tuple[Path, list[float]]:
    """Crop/weed colour masks: ``images/*.png`` and ``masks/*.png`` RGB, black soil, green crop
    (64 pixels), red weed (32 pixels)."""
    h, w = size
    for i in range(n):
        mask = np.zeros((h, w, 3), np.uint8)
        mask[2 + i:10 + i, 2:10] = (0, 255, 0)
        mask[20:24, 12 + i:20 + i] = (255, 0, 0)
        write_image(root / "images" / f"field_{i}.png", (mask // 2 + 20).astype(np.uint8))
        write_image(root / "masks" / f"field_{i}.png", mask)
    total = h * w
    return root, [1 - 96 / total, 64 / total, 32 / total]


def write_void(
    root: Path, n: int = 4, size: tuple[int, int] = (32, 32)
) -> tuple[Path, list[float], float]:
    """Street scene ids: road 0, car 1 (16 rows), person 2 (4 rows) and void 255 (4 rows, ignored);
    the rows move from frame to frame.
    Returns the folder, the class shares among labelled pixels and the ignored share."""
    h, w = size
    for i in range(n):
        mask = np.zeros((h, w), np.uint8)
        mask[i:16 + i] = 1
        mask[16 + i:20 + i] = 2
        mask[28:] = 255
        write_image(root / "images" / f"frame_{i:03d}.png", (mask // 3 + 10 * i).astype(np.uint8))
        write_image(root / "masks" / f"frame_{i:03d}.png", mask)
    labelled = 28
    return root, [8 / labelled, 16 / labelled, 4 / labelled], 4 / 32


#: data sets whose images and masks folders sit below the folder a user gives (as downloaded):
#: name -> (images folder, masks folder, image name, mask name, other files: relative path ->
#: "mask" (a mask-like image that is not the labels) or "text"), {i} is the image's index
DOWNLOADED = {
    "voc": ("VOCdevkit/VOC2012/JPEGImages", "VOCdevkit/VOC2012/SegmentationClass",
            "2007_00{i:04d}.jpg", "2007_00{i:04d}.png",
            {"VOCdevkit/VOC2012/SegmentationObject/2007_00{i:04d}.png": "mask",
             "VOCdevkit/VOC2012/JPEGImages/2008_00{i:04d}.jpg": "image",
             "VOCdevkit/VOC2012/Annotations/2007_00{i:04d}.xml": "text",
             "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt": "text"}),
    "pets": ("images", "annotations/trimaps", "Abyssinian_{i}.jpg", "Abyssinian_{i}.png",
             {"annotations/xmls/Abyssinian_{i}.xml": "text", "annotations/list.txt": "text",
              "annotations/trimaps/._Abyssinian_{i}.png": "text"}),
    "isic": ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth",
             "ISIC_000000{i}.jpg", "ISIC_000000{i}_segmentation.png",
             {"ISIC2018_Task1-2_Training_Input/LICENSE.txt": "text"}),
    "camvid": ("CamVid/train", "CamVid/trainannot", "0001TP_00{i}.png", "0001TP_00{i}.png",
               {"CamVid/val/Seq05VD_f0{i}.png": "image",
                "CamVid/valannot/Seq05VD_f0{i}.png": "mask", "CamVid/train.txt": "text"}),
    "ade20k": ("ADEChallengeData2016/images/training", "ADEChallengeData2016/annotations/training",
               "ADE_train_0000000{i}.jpg", "ADE_train_0000000{i}.png",
               {"ADEChallengeData2016/images/validation/ADE_val_0000000{i}.jpg": "image",
                "ADEChallengeData2016/annotations/validation/ADE_val_0000000{i}.png": "mask",
                "ADEChallengeData2016/objectInfo150.txt": "text"}),
    "kvasir": ("Kvasir-SEG/images", "Kvasir-SEG/masks", "cju{i}x.jpg", "cju{i}x.png",
               {"kavsir_bboxes.json": "text"}),
}


def write_downloaded(root: Path, name: str, n: int = 4,
                     size: tuple[int, int] = (24, 32)) -> tuple[Path, str, str]:
    """One of DOWNLOADED's layouts under ``root``, with binary masks (0/1; class ids for
    ``camvid``); returns (root, its images folder, its masks folder)."""
    image_dir, mask_dir, image_name, mask_name, others = DOWNLOADED[name]
    images, masks = blobs(n, size, seed=len(name))
    for i, (image, mask) in enumerate(zip(images, masks)):
        write_image(root / image_dir / image_name.format(i=i), np.stack([image] * 3, -1))
        write_image(root / mask_dir / mask_name.format(i=i), mask)
        for path, kind in others.items():
            target = root / path.format(i=i)
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind == "text":
                target.write_text("not an image\n", encoding="utf-8")
            else:
                write_image(target, np.stack([image] * 3, -1) if kind == "image" else 1 - mask)
    return root, image_dir, mask_dir
