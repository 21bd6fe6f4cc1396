"""The README tells the truth: its run-file block lists every field with its real default."""

import re
import tomllib
from pathlib import Path

from featdistill_core.config import RunConfig, config_from_dict, config_to_dict

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks_after(marker: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(marker)
    return re.findall(r"```toml\n(.*?)```", text[start:], flags=re.S)


def test_every_field_block_shows_every_field_with_its_default():
    shown = tomllib.loads(_blocks_after("Every field, with its default")[0])
    defaults = config_to_dict(RunConfig())
    defaults.pop("pairs")
    assert shown == defaults


def test_the_example_pair_is_a_valid_pair():
    example = tomllib.loads(_blocks_after("A distillation term is a `[[pairs]]` table")[0])
    config = config_from_dict({"teacher": {"weights": "t.safetensors"}, **example})
    assert config.pairs[0].method == example["pairs"][0]["method"]


def test_the_methods_table_is_the_registrys():
    from featdistill_core.cli.inspect import methods_markdown
    from featdistill_core.losses import METHODS

    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- methods table: featdistill methods --markdown -->\n")
    end = text.index("<!-- end of methods table -->")
    table = text[start:end].split("\n", 1)[1].strip()
    assert table == methods_markdown()
    assert len(METHODS) == 17 and all(f"| `{key}` |" in table for key in METHODS)
