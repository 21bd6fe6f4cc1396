"""``featdistill layers MODEL``, ``featdistill models`` and ``featdistill methods``: what the registries hold."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("layers", help="list a model's layers with their output shapes")
    p.add_argument("model", help="a registry name, package.module:function, torchvision:NAME or timm:NAME")
    p.add_argument("--input", default="3x32x32", help="input shape CxHxW (default 3x32x32)")
    p.add_argument("--num-classes", type=int, default=10)
    p.set_defaults(handler=layers)

    p = sub.add_parser("models", help="list the model registry")
    p.set_defaults(handler=models)

    p = sub.add_parser("methods", help="list the distillation methods, with their papers and reference weights")
    p.add_argument("--markdown", action="store_true", help="print the README's table of methods")
    p.set_defaults(handler=methods)


def layers(args) -> int:
    from featdistill_core.layers import format_layer_table, list_layers
    from featdistill_core.models import create_model

    shape = _parse_shape(args.input)
    model = create_model(args.model, args.num_classes)
    print(format_layer_table(list_layers(model, shape)))
    return 0


def models(args) -> int:
    from featdistill_core.models import list_models

    models = list_models()
    width = max(len(m.name) for m in models)
    for m in models:
        print(f"{m.name:{width}s}  {m.family:12s}  {m.description}")
    print("\nAlso: package.module:function (your own factory), torchvision:NAME, timm:NAME (if installed).")
    return 0


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"--input must look like 3x32x32 (channels x height x width); got {text!r}")
    return shape


def methods(args) -> int:
    from featdistill_core.losses import METHODS

    if getattr(args, "markdown", False):
        print(methods_markdown())
        return 0
    width = max(len(key) for key in METHODS)
    for key, info in METHODS.items():
        options = ", ".join(f"{name}={spec.default!r}" for name, spec in info.options.items()) or "no options"
        print(f"{key:{width}s}  {info.title}: {info.layers.describe()}, taps the {info.taps}; "
              f"reference weight {info.default_weight:g}; {options}")
        print(f"{'':{width}s}  {info.paper}")
    return 0


def methods_markdown() -> str:
    """The table of methods the README shows, made from the registry (the one place these facts live)."""
    from featdistill_core.losses import METHODS

    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    rows = ["| method | what | formula | layers, tap | reference weight, stage | options | paper |",
            "|---|---|---|---|---|---|---|"]
    for key, info in METHODS.items():
        options = ", ".join(f"`{name}={spec.default!r}`" for name, spec in info.options.items()) or "—"
        where = "logits" if info.on_logits else f"{info.layers.describe()}, {info.taps}; placed by `{info.placement}`"
        rows.append(f"| `{key}` | {cell(info.title)} | {cell(info.formula)} | {cell(where)} | "
                    f"{info.default_weight:g}, {info.default_stage} | {cell(options)} | {cell(info.paper)} |")
    return "\n".join(rows)
