"""`plast export`: the trained layers of a PLAST checkpoint as a small delta; merge a delta into a
base checkpoint (bit exact); or convert an official LLaVA checkpoint to the llava-hf format."""
from __future__ import annotations

from plast_plugin.core.model_layout import MODULE_CHOICES
from plast_plugin.errors import PlastError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write only the trained layers of a checkpoint, merge such a delta, or convert to llava-hf",
        description="Three modes. (1) `plast export CHECKPOINT --out DIR`: DIR/plast_delta.safetensors "
        "with only the trained layers + DIR/plast_delta.json (base model and its fingerprint, layers, checksums); layers and modules "
        "come from the run's plast_training.json (without one, pass --layers and --modules). (2) `plast export "
        "DELTA --merge-into BASE --out DIR`: BASE with the delta's tensors replaced, bit-identical to the "
        "trained checkpoint; a BASE other than the one the run started from is refused. (3) `plast export CHECKPOINT --to-hf --out DIR`: official LLaVA -> llava-hf "
        "(LlavaForConditionalGeneration) for lmms-eval's llava_hf.",
    )
    parser.add_argument("checkpoint", help="a PLAST training output (mode 1), a delta directory (mode 2), an official LLaVA folder or hub id (mode 3)")
    parser.add_argument("--out", required=True, help="output directory (must not exist yet, or be empty)")
    parser.add_argument("--merge-into", metavar="BASE", default=None,
                        help="merge the delta CHECKPOINT into this base checkpoint (folder or hub id)")
    parser.add_argument("--to-hf", action="store_true", help="convert CHECKPOINT to the llava-hf format")
    parser.add_argument("--revision", default=None,
                        help="hub branch, tag or commit when CHECKPOINT (--to-hf) or BASE is a hub id")
    parser.add_argument("--vision-tower", default=None, metavar="CLIP_DIR",
                        help="--to-hf: local CLIP vision folder, when the checkpoint names a hub id and the "
                        "hub cannot be reached (default: the checkpoint's mm_vision_tower)")
    parser.add_argument("--layers", default=None,
                        help="layer spec ('0-4', '1,3'), needed when the checkpoint has no plast_training.json; "
                        "with one it must match the record (mode 1)")
    parser.add_argument("--modules", default=None, choices=MODULE_CHOICES,
                        help="what of each layer was trained: needed without plast_training.json, must match it "
                        "otherwise (mode 1)")
    parser.add_argument("--base-model", default=None,
                        help="name of the base model to record in the manifest (default: from the run)")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.to_hf and args.merge_into:
        raise PlastError("--to-hf and --merge-into are separate modes; run them one after the other")
    revision = {"revision": args.revision} if args.revision else {}
    if args.to_hf:
        from plast_plugin.atomic import check_new_directory
        from plast_plugin.checkpoints.hf_convert import convert_to_hf

        check_new_directory(args.out)
        # A hub id (e.g. liuhaotian/llava-v1.5-7b) converts from its snapshot in the HF cache.
        convert_to_hf(args.checkpoint, args.out, **revision,
                      **({"vision_tower": args.vision_tower} if args.vision_tower else {}))
        print(f"converted {args.checkpoint} to llava-hf format in {args.out}")
        return 0
    if args.vision_tower:
        raise PlastError("--vision-tower is for --to-hf only; drop it")
    from plast_plugin.checkpoints import export
    if args.merge_into:
        out = export.merge_delta(args.merge_into, args.checkpoint, args.out, **revision)
        _, manifest = export.load_delta(args.checkpoint)
        print(f"merged {len(manifest['tensors'])} tensors of layers {manifest['layers']} into a copy of "
              f"{args.merge_into}: {out}")
        return 0
    out = export.export_delta(args.checkpoint, args.out, layers=args.layers, modules=args.modules,
                              base_model=args.base_model)
    _, manifest = export.load_delta(out)
    size = (out / export.DELTA_WEIGHTS).stat().st_size
    print(f"wrote {len(manifest['tensors'])} tensors of layers {manifest['layers']} ({manifest['modules']}), "
          f"{size / 2**20:.1f} MiB, base model {manifest['base_model']}: {out}")
    return 0
