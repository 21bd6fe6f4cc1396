"""examples/demo.toml is the embedded demo, so the README's demo leaderboard command runs the demo."""

from pathlib import Path

from featdistill_core.config import load_config, with_absolute_paths
from featdistill_core.demo import demo_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo.toml"


def test_the_example_run_file_is_the_demo():
    assert load_config(EXAMPLE) == with_absolute_paths(demo_config(), EXAMPLE.parent)
