"""The ``mmcl`` command line: one subcommand per job, each defined next to the code it runs.

A subcommand lives in a module that provides ``add_arguments(parser)`` and ``run(args) -> int | None``;
:data:`COMMANDS` maps its name to that module, imported only when the subcommand is used (``mmcl --help`` stays fast).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from mmcl.cpu import passive_wait_policy
from mmcl.errors import MmclError

# What a user can cause and fix: reported on one line with exit status 2 (anything else is a bug: traceback).
EXPECTED_ERRORS = (MmclError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                   PermissionError)

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("mmcl.data.synthetic.cli", "write the built-in synthetic dataset (raw NTU-style files and videos)"),
    "prepare": ("mmcl.data.prepare", "convert a raw dataset into mmcl's prepared format"),
    "train": ("mmcl.engine.trainer", "train a model (same as `accelerate launch mmcl/train.py`)"),
    "pretrain": ("mmcl.pretrain.run", "self-supervised pre-training of an encoder: MoCo v2, HaLP, SkeletonMAE"),
    "probe-encoder": ("mmcl.pretrain.probe", "linear, kNN, semi-supervised, fine-tuning, transfer evaluation of an "
                                             "encoder"),
    "eval": ("mmcl.engine.evaluate", "evaluate a checkpoint on a prepared split, skeletons only"),
    "ensemble": ("mmcl.engine.ensemble", "fuse several streams' scores; weights searched on validation"),
    "predict": ("mmcl.deploy.predict", "top-5 classes of skeleton files or a prepared split (checkpoint or ONNX)"),
    "precompute": ("teachers.precompute", "run the RGB / multimodal-LLM teachers and fill a feature cache"),
    "probe": ("teachers.probe", "linear probe of a teacher cache's features (train -> test), per class"),
    "teacher-cache": ("teachers.export", "export a teacher cache as a Hugging Face datasets folder, or import one"),
    "tune-teacher": ("teachers.tune", "adapt the CLIP / vision-language teachers to a dataset (train split only)"),
    "ablate": ("mmcl.engine.ablate", "baseline vs co-learning variants over seeds on the synthetic set"),
    "zeroshot": ("mmcl.zeroshot.cli", "zero-shot evaluation on UTD-MHAD / SYSU-Action"),
    "export": ("mmcl.deploy.export", "export a deployable checkpoint to ONNX, verified with onnxruntime"),
    "show": ("mmcl.viz.show", "animate a sample's skeletons (GIF / MP4) with its label and top-5 predictions"),
}


def build_parser(commands: dict[str, tuple[str, str]] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmcl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in (commands or COMMANDS).items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mmcl`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}")
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    debug = "--debug" in rest or os.environ.get("MMCL_DEBUG", "") not in ("", "0")
    rest = [a for a in rest if a != "--debug"]
    passive_wait_policy()  # before the command imports torch: OpenMP reads it once
    module = importlib.import_module(COMMANDS[name][0])
    parser = OneLineParser(prog=f"mmcl {name}", description=COMMANDS[name][1],
                           epilog="--debug (or MMCL_DEBUG=1): full traceback of expected errors too")
    module.add_arguments(parser)
    try:
        args = parser.parse_args(rest)
    except SystemExit as done:  # --help, or a usage error already reported
        return int(done.code or 0)
    try:
        return int(module.run(args) or 0)
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        print(f"mmcl {name}: error: {one_line(err)}", file=sys.stderr)
        return 2


class OneLineParser(argparse.ArgumentParser):
    """A usage error on one line, like every other expected error (``--help`` shows the usage)."""

    def error(self, message: str) -> None:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} is not >= {low}")
    return value


def one_line(err: BaseException) -> str:
    """The message of an expected error on one line (an OSError with its file name, as Python words it)."""
    text = str(err) if not isinstance(err, OSError) or not err.filename else \
        f"{err.strerror or type(err).__name__}: {err.filename}"
    return " ".join(text.split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
