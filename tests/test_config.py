"""YAML configs -> frozen dataclasses: errors name file:line or the dotted key; overrides; types."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from asr.config import ConfigError, apply_overrides, config_from_dict, config_to_dict, merge, save_yaml
from asr.config_file import load_yaml, load_yaml_with_lines
from asr.augment import AugmentConfig
from asr.features import FeatureConfig
from asr.model import ModelConfig, list_presets, load_preset
from asr.optim import OptimConfig
from asr.train_config import TrainConfig, resolve_config
from asr.train_config import DataConfig, TokenizerConfig

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Inner:
    size: int = 3
    rate: float = 0.5
    kind: Literal["a", "b"] = "a"
    pairs: tuple[tuple[int, int], ...] = ((1, 2),)
    maybe: int | None = None


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    flag: bool = False
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ load_yaml
def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = _write(tmp_path, "name: ok\ninner:\n  size: 3\n  rate: [1, 2\nflag: true\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:")
    line = int(msg[len(str(path)) + 1:].split(":")[0])
    assert 4 <= line <= 5  # the unclosed list starts on line 4; the parser notices on line 5
    assert "\n" not in msg


def test_yaml_tab_indent_error_names_line(tmp_path):
    path = _write(tmp_path, "a: 1\nb:\n\t- 2\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: invalid YAML"):
        load_yaml(path)


def test_yaml_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: cannot read config"):
        load_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"conf.yaml: expected a mapping at the top level, got list"):
        load_yaml(_write(tmp_path, "- 1\n- 2\n"))
    assert load_yaml(_write(tmp_path, "# only a comment\n")) == {}


def test_yaml_that_is_not_text_names_file_and_line(tmp_path, shared_data):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"preset: tiny\nname: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml:2: not UTF-8 text"):
        load_yaml(path)
    with pytest.raises(ConfigError, match=r"3_theo_5\.wav:1: not UTF-8 text"):  # audio given as a config
        load_yaml(shared_data / "fsdd" / "recordings" / "3_theo_5.wav")


def test_model_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match="model: expected a mapping of model settings, got 1"):
        resolve_config(None, ["model=1"])


def test_yaml_scientific_floats_are_numbers(tmp_path):
    # PyYAML's YAML 1.1 resolver reads "3e-4" as a string; configs must read it as a float.
    data = load_yaml(_write(tmp_path, "lr: 3e-4\nweight_decay: 1E-2\nbig: 2e3\nname: e5\n"))
    assert data == {"lr": 3e-4, "weight_decay": 1e-2, "big": 2000.0, "name": "e5"}
    assert config_from_dict(OptimConfig, {"lr": data["lr"]}).lr == pytest.approx(3e-4)


def test_save_yaml_round_trip(tmp_path):
    cfg = Outer(name="r", flag=True, tags=["t"], inner=Inner(size=7, rate=1e-5, kind="b", pairs=((3, 4), (5, 6))))
    save_yaml(config_to_dict(cfg), tmp_path / "out.yaml")
    assert config_from_dict(Outer, load_yaml(tmp_path / "out.yaml")) == cfg


# ---------------------------------------------------------------------------- config_from_dict
def test_unknown_key_top_level_and_nested():
    with pytest.raises(ConfigError, match=r"unknown key 'nmae' in Outer \(allowed: name, flag, tags, inner\)"):
        config_from_dict(Outer, {"nmae": "x"})
    with pytest.raises(ConfigError, match=r"unknown key 'inner\.sise' in Inner"):
        config_from_dict(Outer, {"inner": {"sise": 3}})


def test_unknown_key_in_train_config_names_dotted_key():
    with pytest.raises(ConfigError, match=r"unknown key 'optim\.lrr' in OptimConfig"):
        config_from_dict(TrainConfig, {"optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"unknown key 'data\.train_manfest'"):
        resolve_config(None, ["preset=tiny", "data.train_manfest=x.jsonl"])


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"inner": {"size": "3"}}, r"inner\.size: expected an integer, got '3'"),
        ({"inner": {"size": 2.5}}, r"inner\.size: expected an integer, got 2\.5"),
        ({"inner": {"size": True}}, r"inner\.size: expected an integer, got True"),
        ({"inner": {"rate": "fast"}}, r"inner\.rate: expected a number, got 'fast'"),
        ({"inner": {"rate": False}}, r"inner\.rate: expected a number"),
        ({"flag": "yes please"}, r"flag: expected true or false, got 'yes please'"),
        ({"flag": 1}, r"flag: expected true or false, got 1"),
        ({"name": 5}, r"name: expected a string, got 5"),
        ({"tags": "t"}, r"tags: expected a list, got 't'"),
        ({"inner": 3}, r"inner: expected a mapping, got 3"),
        ({"inner": {"pairs": [[1, 2, 3]]}}, r"inner\.pairs: expected 2 items, got 3"),
        ({"inner": {"pairs": [["a", 2]]}}, r"inner\.pairs: expected an integer, got 'a'"),
        ({"inner": {"maybe": "x"}}, r"inner\.maybe: expected an integer, got 'x'"),
        ({"inner": {"kind": "c"}}, r"inner\.kind: 'c' is not one of 'a', 'b'"),
    ],
)
def test_type_errors_name_the_dotted_key(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(Outer, data)


def test_nested_dataclasses_tuples_optional_literal():
    cfg = config_from_dict(
        Outer, {"name": "n", "tags": ["a", "b"], "inner": {"size": 4, "rate": 2, "kind": "b", "pairs": [[5, 6]]}}
    )
    assert cfg == Outer(name="n", tags=["a", "b"], inner=Inner(size=4, rate=2.0, kind="b", pairs=((5, 6),)))
    assert isinstance(cfg.inner.rate, float)  # ints are accepted for floats and converted
    assert cfg.inner.pairs == ((5, 6),) and isinstance(cfg.inner.pairs, tuple)
    assert config_from_dict(Outer, {"inner": {"maybe": None}}).inner.maybe is None
    assert config_from_dict(Outer, {"inner": {"maybe": 4}}).inner.maybe == 4
    assert config_from_dict(Outer, None) == Outer()
    with pytest.raises(AttributeError):  # frozen
        cfg.name = "other"  # type: ignore[misc]


def test_model_config_literals_and_pairs():
    cfg = config_from_dict(ModelConfig, {"rnn_type": "lstm", "conv_kernels": [[5, 5], [3, 3]]}, where="model")
    assert cfg.rnn_type == "lstm" and cfg.conv_kernels == ((5, 5), (3, 3))
    with pytest.raises(ConfigError, match=r"model\.rnn_type: 'transformer' is not one of 'gru', 'lstm', 'rnn'"):
        config_from_dict(ModelConfig, {"rnn_type": "transformer"}, where="model")


def test_post_init_value_errors_become_config_errors():
    with pytest.raises(ConfigError, match=r"^optim\.lr must be positive and at most 1000, got -1\.0$"):
        config_from_dict(TrainConfig, {"optim": {"lr": -1}})
    with pytest.raises(ConfigError, match=r"at most 1000, got 1e\+300"):  # overflowed in the optimizer once
        config_from_dict(TrainConfig, {"optim": {"lr": 1e300}})


@pytest.mark.parametrize("key, value, message", [
    ("epochs", 0, "epochs must be >= 1, got 0"),  # exited 0 with an untrained model.pt
    ("seed", -1, "seed must be in [0, 4294967295], got -1"),
    ("max_minutes", -1.0, "max_minutes must be >= 0, got -1.0"),
    ("threads", -1, "threads must be >= 0, got -1"),
    ("data.max_batch_size", 0, "max_batch_size must be >= 1, got 0"),
    ("data.max_batch_s", 0.0, "max_batch_s must be >= 0.001, got 0.0"),
    ("data.num_workers", -2, "num_workers must be >= 0, got -2"),
])
def test_out_of_range_values_are_config_errors(key, value, message):
    section, _, name = key.rpartition(".")
    data = {section: {name: value}} if section else {name: value}
    with pytest.raises(ConfigError) as info:
        config_from_dict(TrainConfig, data)
    assert str(info.value).endswith(message)
    with pytest.raises(ConfigError, match=r"^model\.conv_channels: expected 1-3 layers"):
        config_from_dict(TrainConfig, {"model": {"conv_channels": [1, 1, 1, 1]}})


# ------------------------------------------------------------------------------------ overrides
def test_overrides_scalars_lists_booleans_sections():
    base = {"name": "a", "inner": {"size": 1, "pairs": [[1, 2]]}}
    out = apply_overrides(
        base,
        ["inner.size=3", "inner.rate=3e-4", "flag=true", "tags=[x, y]", "inner.pairs=[[7, 8], [9, 10]]",
         "name=a=b", "inner.maybe=null", "new.section.value=1"],
    )
    assert out == {
        "name": "a=b", "flag": True, "tags": ["x", "y"],
        "inner": {"size": 3, "rate": 3e-4, "pairs": [[7, 8], [9, 10]], "maybe": None},
        "new": {"section": {"value": 1}},
    }
    assert base == {"name": "a", "inner": {"size": 1, "pairs": [[1, 2]]}}  # the input is not modified
    out.pop("new")
    cfg = config_from_dict(Outer, out)
    assert cfg.inner == Inner(size=3, rate=3e-4, pairs=((7, 8), (9, 10)), maybe=None)
    assert cfg.flag is True and cfg.tags == ["x", "y"]
    assert apply_overrides({}, ["flag=false"]) == {"flag": False}
    assert apply_overrides({}, ["name="]) == {"name": ""}


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("novalue", r"override 'novalue': expected key=value"),
        ("=3", r"override '=3': expected key=value"),
        ("name.x=1", r"override 'name\.x=1': 'name' is not a section"),
        ("tags=[1, 2", r"override 'tags=\[1, 2': value is not valid YAML"),
    ],
)
def test_bad_overrides(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides({"name": "a"}, [override])


def test_merge_is_recursive_and_copies():
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    out = merge(base, {"a": {"b": 5}, "e": 3})
    assert out == {"a": {"b": 5, "c": [1]}, "d": 2, "e": 3}
    out["a"]["c"].append(2)
    assert base["a"]["c"] == [1]


def test_resolve_config_from_yaml_file(tmp_path):
    path = _write(tmp_path, "preset: tiny\nepochs: 2\noptim:\n  lr: 3e-3\nmodel:\n  rnn_hidden: 32\n")
    cfg = resolve_config(path, ["optim.warmup_steps=5", "model.bidirectional=false"])
    assert cfg.epochs == 2 and cfg.optim.lr == pytest.approx(3e-3) and cfg.optim.warmup_steps == 5
    assert cfg.model.rnn_hidden == 32 and cfg.model.bidirectional is False
    assert cfg.model.conv_channels == (4, 4)  # from the tiny preset
    with pytest.raises(ConfigError, match=r"unknown model preset 'huge'"):
        resolve_config(path, ["preset=huge"])


# ------------------------------------------------------------------- NaN, infinities, absurd values
@pytest.mark.parametrize("override", [
    # each trained a NaN model with exit 0, or failed with a traceback once the run started
    "features.window_ms=1e400", "features.window_ms=1e300", "features.window_ms=.nan", "features.hop_ms=.inf",
    "features.hop_ms=0", "features.dither=.inf", "features.dither=.nan", "features.dither=-1",
    "features.sample_rate=0", "features.sample_rate=100000000000", "features.n_mels=0", "features.n_mels=1000000",
    "optim.betas=[2, 3]", "optim.betas=[0.9, .nan]", "optim.betas=[0.9, 1]", "optim.momentum=-1",
    "optim.momentum=1", "optim.momentum=.nan", "optim.weight_decay=-1", "optim.weight_decay=.inf",
    "optim.weight_decay=1e300", "optim.grad_clip=.nan", "optim.grad_clip=.inf", "optim.grad_clip=-1",
    "optim.warmup_steps=-5", "optim.lr=.nan", "optim.lr=.inf", "optim.final_lr_ratio=.nan",
    "augment.gain_db=.inf", "augment.gain_db=.nan", "augment.gain_db=1e300", "augment.noise_snr_db=[-.inf, .inf]",
    "augment.noise_snr_db=[.nan, 10]", "augment.noise_snr_db=[30, 10]", "augment.freq_masks=-1",
    "augment.time_masks=1000000000", "augment.time_mask_ratio=.nan", "augment.edge_trim=.nan",
    "augment.noise_prob=.nan", "augment.speed_factors=[.nan]",
    "tokenizer.vocab_size=0", "tokenizer.vocab_size=-3", "tokenizer.vocab_size=4294967296",
    "model.clip=.nan", "model.clip=.inf", "model.dropout=.nan", "model.rnn_hidden=1000000000000",
    "model.conv_channels=[1000000000000, 4]", "model.conv_paddings=[[-1, 0], [0, 0]]", "model.fc_context=-1",
    "max_minutes=.inf", "max_minutes=.nan", "ema_decay=.nan", "threads=10000000000",
    "data.max_batch_s=.inf", "data.eval_batch_s=.nan", "data.num_workers=100000",
])
def test_non_finite_and_out_of_range_values_name_the_key(override):
    key = override.partition("=")[0]
    section, _, name = key.rpartition(".")
    with pytest.raises(ConfigError) as info:
        resolve_config(None, ["preset=tiny", override])
    msg = str(info.value)
    assert "\n" not in msg
    assert re.search(rf"\b{section}\b.*\b{name}\b" if section else rf"\b{name}\b", msg), msg


def test_range_checks_keep_the_limits_that_mean_off():
    cfg = resolve_config(None, ["preset=tiny", "optim.grad_clip=0", "optim.warmup_steps=0", "optim.momentum=0",
                                "optim.weight_decay=0", "features.dither=0", "augment.gain_db=0",
                                "augment.noise_snr_db=[-5, -5]", "tokenizer.vocab_size=2", "model.dropout=0"])
    assert cfg.optim.grad_clip == 0 and cfg.optim.warmup_steps == 0 and cfg.augment.noise_snr_db == (-5, -5)
    with pytest.raises(ConfigError, match=r"^features\.window_ms must be a finite number in "
                                          r"\(0, 1000\], got inf$"):
        resolve_config(None, ["features.window_ms=.inf"])
    with pytest.raises(ConfigError, match=r"optim\.betas must be in \[0, 1\), got \[2\.0, 3\.0\]$"):
        resolve_config(None, ["optim.betas=[2, 3]"])


# ------------------------------------------------------------ odd YAML: int keys, recursive aliases
@pytest.mark.parametrize(("text", "pattern"), [
    ("preset: tiny\n1: a\nfoo: b\n", r"unknown key '1' in TrainConfig"),  # '<' between 'str' and 'int'
    ("preset: tiny\ndata: {2: x, zz: y}\n", r"unknown key 'data\.2' in DataConfig"),
    ("preset: tiny\nnull: 3\ntrue: 4\n", r"unknown key 'None' in TrainConfig"),
])
def test_non_string_keys_are_unknown_keys(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        resolve_config(_write(tmp_path, text))


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "preset: tiny\nmodel: &m {x: *m}\n", "a: &a {b: [1, {c: *a}]}\n"])
def test_recursive_yaml_alias_is_a_config_error(tmp_path, text):  # was a RecursionError
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: recursive YAML alias"):
        load_yaml(path)


def test_yaml_aliases_that_expand_beyond_reason_and_deep_nesting(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]  # 10^7 values
    with pytest.raises(ConfigError, match=r"conf\.yaml: YAML aliases expand to more than 1000000 values"):
        load_yaml(_write(tmp_path, "\n".join(lines) + "\n"))
    shared = "a: &a [1, 2]\nb: [*a, *a, {c: *a}]\n"  # the same list twice is not a loop
    assert load_yaml(_write(tmp_path, shared)) == {"a": [1, 2], "b": [[1, 2], [1, 2], {"c": [1, 2]}]}
    with pytest.raises(ConfigError, match=r"conf\.yaml: invalid YAML: nested too deeply"):
        load_yaml(_write(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n"))


# ------------------------------------------------------------ configs built in Python, not from YAML
@pytest.mark.parametrize("preset", list_presets())
def test_python_config_takes_its_preset_as_the_yaml_path_does(preset):
    cfg = TrainConfig(preset=preset)
    assert cfg.model == load_preset(preset)  # was the default ModelConfig, whatever the preset
    assert cfg == resolve_config(None, [f"preset={preset}"])
    assert config_from_dict(TrainConfig, config_to_dict(cfg)) == cfg  # a checkpoint's stored config
    assert TrainConfig() == resolve_config(None, [])


def test_an_explicit_model_wins_over_the_preset():
    own = ModelConfig(rnn_hidden=32, rnn_layers=1)
    cfg = TrainConfig(preset="tiny", model=own)
    assert cfg.model == own and cfg.preset == "tiny"
    # the YAML path merges the model section over the preset instead
    merged = resolve_config(None, ["preset=tiny", "model.rnn_hidden=32"]).model
    assert merged.rnn_hidden == 32 and merged.conv_channels == load_preset("tiny").conv_channels


@pytest.mark.parametrize("conf", sorted(REPO.glob("recipes/*/conf/*.yaml")),
                         ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_recipe_configs_resolve_to_their_preset_merged_with_their_model_section(conf):
    raw = load_yaml(conf)
    preset = load_preset(raw.get("preset", "small"))
    expected = config_from_dict(ModelConfig, merge(config_to_dict(preset), raw.get("model") or {}))
    assert resolve_config(conf).model == expected


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"preset": "nonexistent"},
     r"^preset: unknown model preset 'nonexistent' \(available: ds1, ds2, medium, small, tiny\)$"),
    ({"preset": "nonexistent", "model": ModelConfig()}, r"unknown model preset 'nonexistent'"),
    ({"device": "gpu"}, r"^device: 'gpu' is not one of 'auto', 'cpu', 'cuda'$"),
    ({"precision": "fp8"}, r"^precision: 'fp8' is not one of 'fp32', 'bf16', 'fp16'$"),
    ({"data": {"train_manifest": "x.jsonl"}},
     r"^data: expected a DataConfig, got dict \{'train_manifest': 'x.jsonl'\}$"),
    ({"model": {"rnn_hidden": 32}}, r"^model: expected a ModelConfig, got dict"),
    ({"tokenizer": None}, r"^tokenizer: expected a TokenizerConfig, got NoneType None$"),
    ({"epochs": "3"}, r"^epochs: expected an integer, got '3'$"),
    ({"ema_decay": "0.9"}, r"^ema_decay: expected a number, got '0.9'$"),
])
def test_python_train_config_is_checked_as_yaml_is(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        TrainConfig(**kwargs)
    with pytest.raises(ValueError, match=r"^epochs must be >= 1, got 0$"):  # ranges: check_ranges, as before
        TrainConfig(epochs=0)


@pytest.mark.parametrize(("build", "pattern"), [
    (lambda: DataConfig(train_manifest=3), r"^data\.train_manifest: expected a string, got 3$"),
    (lambda: DataConfig(sortagrad="yes"), r"^data\.sortagrad: expected true or false"),
    (lambda: TokenizerConfig(kind="word"), r"^tokenizer\.kind: 'word' is not one of 'char', 'bpe', 'unigram'"),
    (lambda: ModelConfig(rnn_type="transformer"), r"^model\.rnn_type: 'transformer' is not one of"),
    (lambda: ModelConfig(conv_kernels=((11, 41), (11, "x"))), r"^model\.conv_kernels: expected an integer"),
    (lambda: OptimConfig(name="adam"), r"^optim\.name: 'adam' is not one of 'adamw', 'sgd'$"),
    (lambda: FeatureConfig(kind="wav2vec"), r"^features\.kind: 'wav2vec' is not one of"),
    (lambda: AugmentConfig(speed_factors=0.9), r"^augment\.speed_factors: expected a list, got 0\.9$"),
])
def test_nested_configs_check_their_own_types(build, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build()


def test_python_values_are_stored_as_yaml_gives_them(tmp_path):
    cfg = TrainConfig(out_dir=Path("exp/x"), data=DataConfig(train_manifest=Path("a.jsonl"), max_batch_s=60),
                      model=ModelConfig(conv_channels=[8, 8]))
    assert cfg.out_dir == "exp/x" and cfg.data.train_manifest == "a.jsonl"
    assert isinstance(cfg.data.max_batch_s, float) and cfg.model.conv_channels == (8, 8)
    hash(cfg)  # lists would make the frozen config unhashable
    save_yaml(config_to_dict(cfg), tmp_path / "config.yaml")
    assert config_from_dict(TrainConfig, load_yaml(tmp_path / "config.yaml")) == cfg


def test_a_problem_in_the_config_file_names_the_file_and_line(tmp_path):
    """`asr train conf.yaml` with an unknown or bad key in the file said only "unknown key 'epochz'
    in TrainConfig": the file went unnamed; then it named the file but not the line. A problem an
    override makes names the key alone."""
    bad = _write(tmp_path, "preset: tiny\nepochz: 3\n")
    for overrides in ([], ["epochs=3"]):
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad))}:2: unknown key 'epochz' in TrainConfig"):
            resolve_config(bad, overrides)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad))}:2: epochs must be >= 1, got 0$"):
        resolve_config(_write(tmp_path, "preset: tiny\nepochs: 0\n"))
    good = _write(tmp_path, "preset: tiny\nepochs: 2\n")
    with pytest.raises(ConfigError, match=r"^unknown key 'optim\.lrr' in OptimConfig"):
        resolve_config(good, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"^optim\.lr must be positive"):
        resolve_config(good, ["optim.lr=-1"])
    with pytest.raises(ConfigError, match=r"^preset: unknown model preset 'huge'"):
        resolve_config(good, ["preset=huge"])
    assert resolve_config(_write(tmp_path, "preset: tiny\nepochs: 0\n"), ["epochs=1"]).epochs == 1  # mended
    typo = _write(tmp_path, "epochs: 2\npreset: tiy\n")  # named no line
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(typo))}:2: preset: unknown model preset 'tiy'"):
        resolve_config(typo)


@pytest.mark.parametrize(("text", "message"), [
    # nested keys: the line of the key itself, not of its section
    ("preset: tiny\nname: x\n\noptim:\n  momentum: 0.5\n  lrr: 1\n", ":6: unknown key 'optim.lrr' in OptimConfig"),
    ("preset: tiny\noptim:\n  schedule: cosine\n  lr: -1\n", ":4: optim.lr must be positive and at most 1000"),
    ("preset: tiny\ndata:\n  sortagrad: true\n  max_batch_s: abc\n", ":4: data.max_batch_s: expected a number"),
    ("preset: tiny\noptim: {name: sgd, betas: [2, 3]}\n", ":2: optim.betas must be in [0, 1)"),  # a flow mapping
    ("preset: tiny\nmodel:\n  rnn_hidden: 32\n  bidirectional: true\n  lookahead_context: 3\n",
     ":5: model.lookahead_context needs a forward-only model"),
    ("preset: tiny\nmodel:\n  conv_channels: [1, 1, 1, 1]\n", ":3: model.conv_channels: expected 1-3 layers"),
    # a check between two fields: the line of the one the file sets
    ("preset: tiny\nseed: 1\nfeatures:\n  kind: mfcc\n  n_mels: 5\n", ":5: features: FeatureConfig: n_mfcc="),
    # a value the file does not set (the preset's) in a section it does: the section's line
    ("preset: tiny\nepochs: 2\nmodel:\n  rnn_layers: 9\n", ":4: model.rnn_layers"),
    ("preset: tiny\nepochs: 2\nmodel: 3\n", ":3: model: expected a mapping of model settings"),
    ("preset: tiny\ndata: {2: x, zz: y}\n", ":2: unknown key 'data.2' in DataConfig"),  # an int key
    ("preset: tiny\nepochs: 1\nepochs: 0\n", ":3: epochs must be >= 1"),  # a key given twice: the last
    # YAML aliases and merge keys: the line that gave the value
    ("preset: tiny\noptim: &o\n  lr: -1\n", ":3: optim.lr must be positive"),
    ("preset: tiny\nname: &n 5\nout_dir: *n\n", ":2: name: expected a string, got 5"),
])
def test_a_bad_value_in_the_file_names_its_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        resolve_config(path)
    assert str(info.value).startswith(f"{path}{message}"), str(info.value)


def test_yaml_key_lines_follow_aliases_and_merge_keys(tmp_path):
    text = ("base: &b\n  lr: 1\n  momentum: 0.5\n"  # lines 1-3
            "optim:\n  <<: *b\n  lr: 2\n"  # lines 4-6: lr set here, momentum merged from line 3
            "again: *b\n"  # line 7: the same mapping again
            "null: 1\n")  # line 8
    data, lines = load_yaml_with_lines(_write(tmp_path, text))
    assert data["optim"] == {"lr": 2, "momentum": 0.5} and data["again"] == {"lr": 1, "momentum": 0.5}
    assert lines["optim"] == 4 and lines["optim.lr"] == 6 and lines["optim.momentum"] == 3
    assert lines["again"] == 7 and "again.lr" not in lines  # walked once, under its first key
    assert lines["None"] == 8 and lines["base.lr"] == 2
    assert "<<" not in str(lines)
    assert load_yaml_with_lines(_write(tmp_path, "# nothing\n")) == ({}, {})
