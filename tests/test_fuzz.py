"""A seeded fuzzer of run files: `featdistill check` answers every mutation with ok or with one line
per problem naming its field — never a traceback, an exception's class name, a hang or a crash —
and what it accepts, `train` starts."""

from __future__ import annotations

import datetime
import math
import random
import re
import time

import pytest

from featdistill_core import cli
from featdistill_core.config import config_to_dict
from featdistill_core.events import StepEvent
from featdistill_core.trainer import Trainer
from featdistill_core.validate import validate_run_file

from tests._tiny import tiny_config

pytestmark = pytest.mark.faults

CASES = 500
SEED = 9
TYPE_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception|Warning)\b")
FIELD = re.compile(r"^(run file |\S+: )")     # the file, or a field of the run file (or an unknown key, named)

HOSTILE = [
    0, -1, 1, 3, 2**31, 2**63 - 1, -2**63, 10**18, 1e308, -1e308, 5e-324, 1e-300, math.inf, -math.inf, math.nan,
    -0.0, 0.5, 1e30, 65_537, "", " ", "x" * 5000, "a\0b", "../../../etc/passwd", "\u202eevil", "layer2", "fc",
    "cuda:99", "mps", "demo_teacher", "resnet8", "nope:nope", "os:system", "sys:exit", "builtins:exec",
    "torchvision:resnet18", "timm:x", True, False, [], [1, 2], ["layer2", "layer3"], [[]], {}, {"a": 1},
    {"p": 1e308}, {"temperature": 5e-324}, datetime.date(2020, 1, 1), [3, 2, 1], [1.5], ["x"] * 300,
]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf else repr(value))
    if isinstance(value, str):
        return '"' + "".join(f"\\u{ord(c):04x}" if not c.isprintable() or c in '"\\' else c for c in value) + '"'
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    raise TypeError(value)


def _toml(data: dict) -> str:
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict) and key != "options":
            tables.append((key, value))
        elif key == "pairs" and isinstance(value, list) and all(isinstance(v, dict) for v in value) and value:
            tables.append((key, value))
        else:
            lines.append(f'"{key}" = {_toml_value(value)}')
    for key, value in tables:
        if isinstance(value, list):
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f'"{k}" = {_toml_value(v)}' for k, v in item.items()]
        else:
            lines.append(f"[{key}]")
            lines += [f'"{k}" = {_toml_value(v)}' for k, v in value.items()]
    return "\n".join(lines) + "\n"


def _paths(data, prefix=""):
    for key, value in data.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict):
            yield from _paths(value, path + ".")
        elif key == "pairs" and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):        # (a first mutation of "two" may have made pairs hostile)
                    yield from _paths(item, f"pairs[{i}].")


def _navigate(data, path):
    parts, holder = path.replace("]", "").split("."), data
    for part in parts[:-1]:
        if "[" in part:
            name, index = part.split("[")
            holder = holder[name][int(index)]
        else:
            holder = holder[part]
    return holder, parts[-1]


def mutate(base: dict, rng: random.Random) -> tuple[str, str]:
    """(TOML text, the field it targets or "" for a mutation of the text itself)."""
    data = _deep_copy(base)
    kind = rng.choice(["set", "set", "set", "set", "delete", "unknown", "text", "pair", "two"])
    if kind in ("set", "two", "delete", "unknown"):
        for _ in range(2 if kind == "two" else 1):
            path = rng.choice(list(_paths(data)))
            holder, key = _navigate(data, path)
            if kind == "delete":
                holder.pop(key, None)
            elif kind == "unknown":
                holder[rng.choice(["colour", "lr", "epochz", "weights", "x" * 40])] = rng.choice(HOSTILE)
            else:
                holder[key] = rng.choice(HOSTILE)
        return _toml(data), path if kind == "set" else ""
    if kind == "pair":
        pair = {"method": rng.choice(["at", "hint", "fsp", "kd", "dkd", "nst", "bogus", 7]),
                "teacher": rng.choice([["layer2"], ["layer1", "layer2"], [], ["fc"], "layer3", ["nope"]]),
                "student": rng.choice([["layer2"], ["layer1", "layer2"], [], ["conv1"], "layer3"]),
                "weight": rng.choice([1.0, 0, -1, 1e6, 1e7, math.nan, "w"]),
                "stage": rng.choice(["student", "init", "joint", "later", 3]),
                "options": rng.choice([{}, {"p": rng.choice(HOSTILE)}, {"regressor": "conv"}, {"x": 1}, 3])}
        data["pairs"].append(pair)
        return _toml(data), ""
    text = _toml(data)
    op = rng.choice(["cut", "flip", "insert", "nest", "bigint", "repeat"])
    if op == "cut":
        return text[: rng.randrange(len(text))], ""
    if op == "flip":
        i = rng.randrange(len(text))
        return text[:i] + chr(rng.randrange(1, 0x2FF)) + text[i + 1:], ""
    if op == "insert":
        i = rng.randrange(len(text))
        return text[:i] + rng.choice(["[", "]", "=", "\n[[pairs]]\n", '"', "\\", "\n[kd]\n", "\x00", "{"]) + text[i:], ""
    if op == "nest":
        depth = rng.choice([50, 1000, 20000])
        return text + "deep = " + "[" * depth + "]" * depth + "\n", ""
    if op == "bigint":
        return text.replace("seed = 0", f"seed = {'9' * rng.choice([20, 400, 5000])}"), ""
    return text + text, ""


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def test_fuzzed_run_files_get_a_field_and_a_plain_message(tmp_path, capsys):
    base_config = tiny_config(tmp_path)
    base = config_to_dict(base_config)
    base["output_dir"] = str(tmp_path / "runs")
    rng = random.Random(SEED)
    path = tmp_path / "run.toml"
    outcomes = {"ok": 0, "refused": 0}
    targeted = {"refused": 0, "named": 0}      # a refused mutation of one field: is that field named?
    accepted, slowest = [], (0.0, "")
    started = time.monotonic()
    for case in range(CASES):
        text, target = mutate(base, rng)
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        began = time.monotonic()
        code = cli.main(["check", str(path)])
        elapsed = time.monotonic() - began
        slowest = max(slowest, (elapsed, text[:200]))
        out, err = capsys.readouterr()
        context = f"case {case}:\n{text[:1500]}\n--- stderr:\n{err[:2000]}"
        assert code in (0, 2), context
        assert "Traceback" not in err and not TYPE_NAME.search(err), context
        if code == 0:
            outcomes["ok"] += 1
            assert err == "", context
            if len(accepted) < 4 and text not in accepted:
                accepted.append(text)
            continue
        outcomes["refused"] += 1
        lines = err.strip().splitlines()
        assert lines and all(line.startswith("featdistill: error: ") for line in lines), context
        messages = [line[len("featdistill: error: "):] for line in lines]
        assert all(FIELD.match(m) for m in messages), context
        if target:
            fields = [m.split(": ", 1)[0] for m in messages]
            targeted["refused"] += 1
            targeted["named"] += any(f.startswith(target) or target.startswith(f) for f in fields)
    print(f"\nfuzz: {CASES} run files, {outcomes['ok']} accepted, {outcomes['refused']} refused, "
          f"{time.monotonic() - started:.0f} s, slowest check {slowest[0]:.1f} s; "
          f"{targeted['named']} of {targeted['refused']} refused one-field mutations named that field")
    assert targeted["named"] >= 0.9 * targeted["refused"]
    assert outcomes["refused"] > CASES // 2 and outcomes["ok"] >= 10
    assert slowest[0] < 60, slowest

    for text in accepted:                # what check accepts, train starts
        path.write_text(text, encoding="utf-8")
        trainer = Trainer(validate_run_file(path))
        trainer.subscribe(lambda e, t=trainer: t.request_stop() if isinstance(e, StepEvent) else None)
        assert trainer.run().stopped
