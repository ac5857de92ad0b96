"""`plast build-data`: parallel questions -> LLaVA conversation JSON for PLAST fine-tuning."""
from __future__ import annotations

from pathlib import Path

from plast_plugin.data.translation_data import DEFAULT_TEMPLATE, TEMPLATE_FIELDS
from plast_plugin.commands.select import DATA_HELP


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "build-data",
        help="turn parallel questions into LLaVA question-translation training data",
        description="Write LLaVA conversation JSON: for every question and non-pivot language, "
        "(image) + TEMPLATE -> the pivot-language (English) question. Same inputs as `plast select`; "
        "unparallel data is refused. Train with --data_path OUT (images are written as absolute paths, "
        "so any --image_folder works).",
    )
    parser.add_argument("--data", required=True, nargs="+", help=DATA_HELP)
    parser.add_argument("--out", required=True, help="output .json file")
    parser.add_argument("--languages", default=None,
                        help="comma-separated source languages, e.g. zh,pt,ar,tr,ru (default: all in the data)")
    parser.add_argument("--pivot", default="en", help="target language of the translations (default: en)")
    parser.add_argument("--template", default=DEFAULT_TEMPLATE,
                        help="human turn; placeholders " + ", ".join("{%s}" % f for f in TEMPLATE_FIELDS)
                        + " (default: %(default)r)")
    parser.add_argument("--images", default="auto", choices=("auto", "on", "off"),
                        help="auto: keep the questions' images when present; on: require them; off: text only")
    parser.add_argument("--image-dir", default=None,
                        help="where inline (base64, e.g. TSV) images are written (default: OUT without .json + '_images')")
    parser.add_argument("--max-samples", type=int, default=None, help="use the first N questions of each language")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from plast_plugin.errors import PlastError
    from plast_plugin.data.languages import parse_language_list
    from plast_plugin.data.parallel_data import load_parallel_questions
    from plast_plugin.data.translation_data import build_translation_data, check_template

    out = Path(args.out)
    if out.is_dir():  # checked before any work, not after
        raise PlastError(f"--out {out} is a folder; give the path of the .json file to write")
    check_template(args.template)
    languages = parse_language_list(args.languages) if args.languages else None
    questions = load_parallel_questions(args.data, languages=languages, pivot=args.pivot,
                                        max_samples=args.max_samples)
    image_dir = Path(args.image_dir) if args.image_dir else out.with_name(out.stem + "_images")
    data = build_translation_data(questions, template=args.template, images=args.images,
                                  image_dir=image_dir, progress=not args.quiet)
    data.save(out)
    print(f"wrote {len(data.records)} conversations to {out} ({data.with_images} with images)")
    for lang, count in data.counts.items():
        print(f"  {lang} -> {questions.pivot}: {count}")
    if data.inline_images:
        print(f"  {len(data.inline_images)} inline images written to {image_dir}")
    return 0
