// ThawChart: small time-series charts on a <canvas> (lines with gaps for missing points, or
// bars), with a y scale, a few time labels and a legend. No dependencies. Each drawn canvas
// carries data-points (values present) and data-nonzero (values above zero) for tests.
"use strict";
(function () {
  const PAD = { l: 58, r: 8, t: 8, b: 20 };

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function fmt(v) {
    if (v >= 1000) return Number((v / 1000).toPrecision(3)) + "k";
    return String(Number(v.toPrecision(3)));
  }

  function timeLabel(s, spanS) {
    const d = new Date(s * 1000);
    const hm = d.toISOString().slice(11, 16);
    return spanS > 86400 ? d.toISOString().slice(5, 10) + " " + hm : hm;
  }

  // opts: {t: [unix s], series: [{label, color, values, bars}], unit}
  function draw(canvas, opts) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 380, h = canvas.clientHeight || 150;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const t = opts.t || [];
    const n = t.length;
    let max = 0, points = 0, nonzero = 0;
    for (const s of opts.series) {
      for (const v of s.values) {
        if (v === null || v === undefined) continue;
        points++;
        if (v > 0) nonzero++;
        if (v > max) max = v;
      }
    }
    canvas.dataset.points = String(points);
    canvas.dataset.nonzero = String(nonzero);
    const top = niceMax(max * 1.1);  // headroom: a line at the maximum stays visible
    const pw = w - PAD.l - PAD.r, ph = h - PAD.t - PAD.b;
    const x = (i) => PAD.l + (n <= 1 ? pw / 2 : (i * pw) / (n - 1));
    const y = (v) => PAD.t + ph - (v / top) * ph;
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#6b7280";
    g.strokeStyle = "#e5e7eb";
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let k = 0; k <= 4; k++) {
      const v = (top * k) / 4;
      const yy = Math.round(y(v)) + 0.5;
      g.beginPath();
      g.moveTo(PAD.l, yy);
      g.lineTo(w - PAD.r, yy);
      g.stroke();
      g.fillText(fmt(v) + (k === 4 && opts.unit ? " " + opts.unit : ""), PAD.l - 4, yy);
    }
    if (n > 0) {
      g.textBaseline = "top";
      const span = n > 1 ? t[n - 1] - t[0] : 0;
      for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
        g.textAlign = i === 0 ? "left" : i === n - 1 ? "right" : "center";
        g.fillText(timeLabel(t[i], span), x(i), h - PAD.b + 5);
      }
    }
    const bars = opts.series.filter((s) => s.bars);
    const bw = Math.max(1, (pw / Math.max(n, 1)) * 0.8 / Math.max(bars.length, 1));
    bars.forEach((s, bi) => {
      g.fillStyle = s.color;
      s.values.forEach((v, i) => {
        if (!(v > 0)) return;
        const left = x(i) - (bw * bars.length) / 2 + bi * bw;
        g.fillRect(left, y(v), bw, PAD.t + ph - y(v));
      });
    });
    for (const s of opts.series) {
      if (s.bars) continue;
      g.strokeStyle = s.color;
      g.fillStyle = s.color;
      g.lineWidth = 1.6;
      g.beginPath();
      let open = false;
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) {
          open = false;
          return;
        }
        if (open) g.lineTo(x(i), y(v));
        else g.moveTo(x(i), y(v));
        open = true;
      });
      g.stroke();
      // A lone point between gaps would draw nothing: mark every point that has data.
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const lone = (i === 0 || s.values[i - 1] == null) && (i === n - 1 || s.values[i + 1] == null);
        if (lone || v > 0) {
          g.beginPath();
          g.arc(x(i), y(v), lone ? 2.5 : 1.5, 0, 2 * Math.PI);
          g.fill();
        }
      });
    }
  }

  window.ThawChart = { draw };
})();
