"""DataConfig: defaults, normalisation, validation with messages that name the key, round trip."""

from __future__ import annotations

import pytest

from segsearch.data import Augment, DataConfig
from segsearch.errors import ConfigError


def test_defaults_and_normalisation():
    c = DataConfig()
    assert (
        c.source == "sample"
        and c.is_sample
        and c.image_size == (128, 128)
        and c.augment == Augment()
    )
    c = DataConfig(source="d", image_size=64, augment=0.5, colors=[[0, 0, 0], [255, 0, 0]])
    assert c.image_size == (64, 64)
    assert c.augment.strength == 0.5
    assert c.colors == (((0, 0, 0), 0), ((255, 0, 0), 1))
    assert DataConfig(augment=None).augment.enabled is False
    assert DataConfig(augment={"elastic": 0}).augment.elastic == 0


def test_round_trip_through_dict():
    c = DataConfig(source="d", image_size=(64, 96), colors={"#ff0000": 1, "#000000": 0},
                   ignore_value=255, augment=2)
    again = DataConfig.from_dict(c.to_dict())
    assert again == c
    import json

    json.dumps(c.to_dict())


@pytest.mark.parametrize("kwargs, pattern", [
    ({"image_size": (4, 4)}, r"data.image_size: each side must be >= 8"),
    ({"image_size": "big"}, r"data.image_size: expected \[height, width\]"),
    ({"num_classes": 0}, r"data.num_classes: expected 1 \(binary\) or >= 2"),
    ({"channels": 2}, r"data.channels: expected 1, 3"),
    ({"val_fraction": 1.0}, r"data.val_fraction: must be between 0 and 1 .*data.val_source"),
    ({"mask_kind": "rgba"}, r"data.mask_kind: unknown mask kind 'rgba'; did you mean 'rgb'\?"),
    ({"mask_kind": "rgb"}, r"data.colors: mask_kind 'rgb' needs a colour table"),
    ({"colors": {"red": 1}}, r"data.colors\['red'\]: cannot read colour 'red'"),
    ({"colors": {"#ff0000": 1, "255,0,0": 2}}, r"colour \(255, 0, 0\) is given twice"),
    ({"resize": "pad"}, r"data.resize: unknown resize mode 'pad'"),
    ({"resize": "crop", "image_size": None}, r"resize 'crop' needs an image_size"),
    ({"augment": {"strenght": 1}},
     r"data.augment: unknown augmentation option 'strenght'; did you mean 'strength'\?"),
    ({"augment": -1}, r"data.augment.strength: must be >= 0"),
    ({"augment": {"contrast": 1.5}}, r"contrast x strength must stay below 1"),
    ({"ignore_value": -1}, r"data.ignore_value: expected a mask value"),
    ({"seed": 1.5}, r"data.seed: expected an integer"),
    ({"images_dir": ""}, r"data.images_dir: expected a folder relative to data.source"),
    ({"pair": "abc"}, r"data.pair: 'abc' has no group"),
    ({"pair": "(["}, r"data.pair: '\(\[' is not a valid regular expression"),
    ({"values": {"x": 1}}, r"data.values\['x'\]: a mask value must be an integer"),
    ({"values": {1: 0}, "colors": {"#000000": 0}}, r"data.values: give either values .* or colors"),
    ({"values": {1: 0, 2: 1}, "mask_kind": "binary"},
     r"data.values: .* mask_kind must be auto or ids"),
    ({"mat_key": ""}, r"data.mat_key: expected a dotted path"),
    ({"class_names": ["only"]}, r"data.class_names: expected a list of at least two names"),
])
def test_validation_messages(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        DataConfig(**kwargs)


def test_from_dict_unknown_key_and_where():
    with pytest.raises(
        ConfigError,
        match=r"spaces/unet.yaml: data: unknown data option 'image_sise'; "
        r"did you mean 'image_size'\?",
    ):
        DataConfig.from_dict({"image_sise": 64}, where="spaces/unet.yaml: data")
    with pytest.raises(ConfigError, match=r"^spaces/unet.yaml: data.val_fraction"):
        DataConfig.from_dict({"val_fraction": 2}, where="spaces/unet.yaml: data")
    assert DataConfig.from_dict({"image_size": [32, 48]}).image_size == (32, 48)


def test_values_written_without_a_space_after_the_colon():
    import yaml

    from segsearch.data.config import parse_values

    with pytest.raises(
        ConfigError,
        match=r"YAML takes 0:0 for one key \(the text '0:0'\) without a class id; write "
        r"\{0: 0, 255: 1\} with a space after each colon: --set 'data.values="
        r"\{0: 0, 255: 1\}'",
    ):
        parse_values(yaml.safe_load("{0:0, 255:1}"))
    with pytest.raises(ConfigError, match=r"read as \{1: 0, 121: null\}.*write \{1: 0, 2: 1\}"):
        parse_values(yaml.safe_load("{1: 0, 2:1}"))
    assert parse_values(yaml.safe_load("{1: 0, 2: 1}")) == ((1, 0), (2, 1))


def test_val_dirs_default_to_the_training_folders():
    config = DataConfig(source="a", val_source="b", images_dir="training/images")
    assert config.val_dirs == ("training/images", "masks")
    config = DataConfig(
        source="a", val_source="a", val_images_dir="test/images/", val_masks_dir="test/1st_manual"
    )
    assert config.val_dirs == ("test/images", "test/1st_manual")
    assert DataConfig.from_dict(config.to_dict()) == config
    with pytest.raises(
        ConfigError, match=r"data.val_masks_dir: expected a folder relative to data.val_source"
    ):
        DataConfig(source="a", val_source="a", val_masks_dir="  ")
