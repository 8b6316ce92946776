"""``simvq-audio export-onnx [--model M] -o DIR``: the codec as ``encoder.onnx`` + ``decoder.onnx``."""

from __future__ import annotations

import argparse
import sys

HELP = ("export a model as encoder.onnx (audio -> codes, the nearest-code search inside) and decoder.onnx "
        "(codes -> audio), with dynamic batch and length, plus its config.json and onnx.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default",
                        help="model folder, built-in model name or Hugging Face Hub repo id (default: default)")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--exporter", default="torchscript", choices=("torchscript", "dynamo"),
                        help="torch.onnx exporter (default torchscript: dynamo=False; with torch 2.13 dynamo fixes the "
                             "LSTM's length, which the check then reports; docs/onnx.md)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the check that ONNX Runtime gives torch's codes and audio on 2 s of a test signal")


def run(args: argparse.Namespace) -> int:
    from ..models.codec import SimVQCodec
    from ..models.pretrained import model_folder
    from ..onnx.export import export_onnx

    codec = SimVQCodec.from_pretrained(args.model)
    manifest = export_onnx(codec, args.output, model_dir=model_folder(args.model), exporter=args.exporter)
    print(f"{args.output}: encoder.onnx, decoder.onnx for model {manifest['model_id']} "
          f"({args.exporter} exporter, opset {manifest['opset']}; inputs of at least {manifest['min_samples']} samples)")
    if not args.no_check:
        from ..onnx.check import check_export

        report = check_export(codec, args.output)
        print(f"check: {report['equal_codes']}/{report['codes']} codes equal torch's, decoded audio max abs "
              f"difference {report['max_abs_audio']:.2e} ({report['seconds']:.1f} s of a harmonic tone in noise, batch {report['batch']})")
        if report["equal_codes"] < report["codes"] or report["snr_db"] < 40:
            print("warning: the graphs disagree with torch beyond near-ties and float rounding", file=sys.stderr)
            return 1
    return 0
