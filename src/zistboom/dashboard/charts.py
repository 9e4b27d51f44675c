"""Server-side SVG charts for the dashboard (no JavaScript, no chart library, nothing fetched).

Why our own code: the charts are simple line charts and an SVG string is a few dozen lines; a
front-end chart library would need JavaScript and vendored assets for no gain, and server-side
SVG renders the same with scripts off and in screenshots.

Right-to-left reading: time runs from right (oldest, the window's start) to left (now), the way
Material Design's bidirectionality guidance mirrors time-series charts for RTL languages; the
value axis and its labels sit on the right, where a Persian reader starts. Every chart says what
it measures (title, value-axis label with its unit, and the window in the caption). Missing
buckets (``None``) break the line: unknown time is never drawn as a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape

from markupsafe import Markup

from zistboom.text.digits import format_number_fa
from zistboom.text.jalali import format_jalali

NO_DATA_FA = "داده‌ای هنوز ثبت نشده است"

W, H = 640, 230
PAD_L, PAD_R, PAD_T, PAD_B = 16, 64, 34, 44  # value axis on the right


def _fmt_tick(value: float, decimals: int) -> str:
    return format_number_fa(value, decimals)


def _x_label(t: datetime, window: timedelta) -> str:
    text = format_jalali(t, with_time=window <= timedelta(days=2))
    return text.split(" ")[1] if window <= timedelta(days=2) else text[5:]  # HH:MM or MM/DD


def line_chart(
    points: Sequence[tuple[datetime, float | None]],
    *,
    start: datetime,
    end: datetime,
    title_fa: str,
    y_label_fa: str,
    window_fa: str,
    y_min: float | None = None,
    y_max: float | None = None,
    decimals: int = 1,
    target: float | None = None,
    target_label_fa: str = "",
    chart_id: str = "chart",
) -> Markup:
    """An SVG line chart of ``points`` over ``[start, end]`` (aware datetimes).

    Args:
        points: ``(bucket start, value or None)`` pairs; ``None`` means no data in that bucket.
        title_fa / y_label_fa / window_fa: what is measured, the value axis with its unit, and the
            time window and bucket size, all in Persian.
        y_min / y_max: fixed value range (default: the data's range, padded).
        target: optional horizontal dashed line (e.g. the SLO), labelled ``target_label_fa``.
    Returns:
        ``Markup`` holding an ``<svg>`` element (safe to insert into a Jinja template).
    """
    vals = [v for _, v in points if v is not None]
    span_s = max((end - start).total_seconds(), 1.0)
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    x0, x1 = PAD_L, PAD_L + pw  # x1 is the right edge (window start), x0 the left (now)
    out: list[str] = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {W} {H}" width="100%" role="img" '
        f'aria-label="{escape(title_fa)} — {escape(window_fa)}" xmlns="http://www.w3.org/2000/svg" '
        f'style="direction:ltr">',
        f"<title>{escape(title_fa)} — {escape(y_label_fa)} — {escape(window_fa)}</title>",
        f'<text x="{W - 8}" y="20" text-anchor="start" class="chart-title" direction="rtl">{escape(title_fa)}</text>',
        f'<text x="{W - 8}" y="{H - 6}" text-anchor="start" class="chart-caption" direction="rtl">'
        f"{escape(window_fa)} · زمان از راست (قدیمی‌تر) به چپ (اکنون)</text>",
        f'<rect x="{x0}" y="{PAD_T}" width="{pw}" height="{ph}" class="chart-frame"/>',
    ]
    # value-axis label, rotated, on the right
    out.append(
        f'<text transform="translate({W - 10},{PAD_T + ph / 2}) rotate(-90)" text-anchor="middle" '
        f'class="chart-axis-label" direction="rtl">{escape(y_label_fa)}</text>'
    )
    if not vals:
        out.append(
            f'<text x="{x0 + pw / 2}" y="{PAD_T + ph / 2 + 5}" text-anchor="middle" class="chart-nodata" '
            f'direction="rtl">{NO_DATA_FA}</text>'
        )
        out.append("</svg>")
        return Markup("".join(out))
    lo = min(vals) if y_min is None else y_min
    hi = max(vals) if y_max is None else y_max
    if target is not None and y_min is None:
        lo = min(lo, target)
    if target is not None and y_max is None:
        hi = max(hi, target)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    if y_min is None or y_max is None:
        pad = (hi - lo) * 0.08
        lo = lo - pad if y_min is None else lo
        hi = hi + pad if y_max is None else hi

    def X(t: datetime) -> float:
        return x1 - (t - start).total_seconds() / span_s * pw

    def Y(v: float) -> float:
        return PAD_T + ph - (v - lo) / (hi - lo) * ph

    for i in range(5):  # value grid + labels on the right
        v = lo + (hi - lo) * i / 4
        y = Y(v)
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" class="chart-grid"/>')
        out.append(f'<text x="{x1 + 4}" y="{y + 4:.1f}" text-anchor="start" class="chart-tick">{_fmt_tick(v, decimals)}</text>')
    window = end - start
    for i in range(5):  # time ticks, right = start
        t = start + window * i / 4
        x = X(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T + ph}" y2="{PAD_T + ph + 4}" class="chart-grid"/>')
        label = "اکنون" if i == 4 else _x_label(t, window)
        out.append(f'<text x="{x:.1f}" y="{PAD_T + ph + 17}" text-anchor="middle" class="chart-tick">{label}</text>')
    if target is not None and lo <= target <= hi:
        y = Y(target)
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" class="chart-target"/>')
        out.append(f'<text x="{x0 + 4}" y="{y - 4:.1f}" text-anchor="end" class="chart-target-label" direction="rtl">'
                   f"{escape(target_label_fa)}</text>")
    segments: list[list[tuple[float, float]]] = [[]]
    for t, v in sorted(points, key=lambda p: p[0]):
        if v is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((X(t), Y(max(lo, min(hi, v)))))
    for seg in segments:
        if len(seg) == 1:
            out.append(f'<circle cx="{seg[0][0]:.1f}" cy="{seg[0][1]:.1f}" r="2.5" class="chart-dot"/>')
        elif seg:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
            out.append(f'<polyline points="{pts}" class="chart-line"/>')
    out.append("</svg>")
    return Markup("".join(out))
