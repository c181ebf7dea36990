"""The Power Spherical explorer: one self-contained HTML page (plotly.js inlined) in which a person moves
sliders for N, α, β and, for each modality, its concentration κ and the angle of its mean direction, and
sees both clouds on the 3-D sphere with their gap, clustering and every loss term (as the modality-gap
thesis's interactive tool). A "fixed seed" toggle keeps the same draw while parameters move.

The page samples and measures in the browser, with the definitions of memegap.studies.modality_gap.power_spherical.measure
(tests/test_explorer.py checks the page's numbers against it on the same points). In d = 3 the Power
Spherical sampler is exact and short: t = 2z − 1 with z ~ Beta(κ + 1, 1) = U^{1/(κ+1)}, a uniform
direction on the circle orthogonal to e₁, then the Householder reflection that takes e₁ to the mean.

    python -m memegap.studies.modality_gap.explorer experiments/modality_gap/explorer.html
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from memegap.utils.io import atomic_path

# slider id -> (label, minimum, maximum, step, initial value)
SLIDERS = {
    "n": ("N per modality", 10, 500, 10, 100),
    "alpha": ("α (paired terms of o_intra, o_inter, antipodal)", 0.0, 2.0, 0.1, 1.0),
    "beta": ("β (variance loss)", -2.0, 2.0, 0.1, 1.0),
    "kappa_x": ("κ image", 0, 500, 1, 50),
    "angle_x": ("angle image (°)", 0, 180, 1, 0),
    "kappa_y": ("κ text", 0, 500, 1, 50),
    "angle_y": ("angle text (°)", 0, 180, 1, 45),
}
MEASURES = ("gap", "clustering", "ce", "ortho_intra", "ortho_inter", "antipodal", "variance", "cyclip",
            "thesis_ortho_intra", "thesis_ortho_inter", "thesis_cyclip")

SCRIPT = r"""
const memegap = (() => {
  function mulberry32(seed) {
    return function () {
      seed |= 0; seed = seed + 0x6D2B79F5 | 0;
      let t = Math.imul(seed ^ seed >>> 15, 1 | seed);
      t = t + Math.imul(t ^ t >>> 7, 61 | t) ^ t;
      return ((t ^ t >>> 14) >>> 0) / 4294967296;
    };
  }
  function direction(angle) { const a = angle * Math.PI / 180; return [Math.cos(a), Math.sin(a), 0]; }
  function sampleCloud(n, kappa, angle, random) {
    const mu = direction(angle), points = [];
    const u = [1 - mu[0], -mu[1], -mu[2]], norm = Math.hypot(...u);
    for (let i = 0; i < n; i++) {
      const t = 2 * Math.pow(random(), 1 / (kappa + 1)) - 1, phi = 2 * Math.PI * random(), r = Math.sqrt(Math.max(0, 1 - t * t));
      let p = [t, r * Math.cos(phi), r * Math.sin(phi)];
      if (norm > 1e-12) {
        const v = u.map(c => c / norm), d = 2 * (v[0] * p[0] + v[1] * p[1] + v[2] * p[2]);
        p = p.map((c, k) => c - d * v[k]);
      }
      points.push(p);
    }
    return points;
  }
  const dot = (a, b) => a.reduce((s, c, k) => s + c * b[k], 0);
  const gram = (a, b) => a.map(p => b.map(q => dot(p, q)));
  function uniformity(x) {
    const n = x.length; let s = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== j) s += Math.exp(-2 * (2 - 2 * dot(x[i], x[j])));
    return Math.log(s / (n * (n - 1)));
  }
  function ortho(g, alpha, absolute) {
    let diag = 0, off = 0;
    g.forEach((row, i) => row.forEach((c, j) => { const v = absolute ? Math.abs(c) : c; if (i === j) diag += v; else off += v; }));
    return -alpha * diag + off;
  }
  const variance = values => { const m = values.reduce((s, v) => s + v, 0) / values.length; return values.reduce((s, v) => s + (v - m) ** 2, 0) / values.length; };
  function logSumExp(values) { const m = Math.max(...values); return m + Math.log(values.reduce((s, v) => s + Math.exp(v - m), 0)); }
  const unit = p => { const r = Math.hypot(...p); return p.map(c => c / r); };
  function measure(x, y, alpha, beta) {
    x = x.map(unit); y = y.map(unit);  // as the Python measures, which normalise inside
    const n = x.length, gx = gram(x, x), gy = gram(y, y), c = gram(x, y), n2 = n * n;
    const mean = a => [0, 1, 2].map(k => a.reduce((s, p) => s + p[k], 0) / a.length);
    const mx = mean(x), my = mean(y);
    const diagonal = c.map((row, i) => row[i]), offDiagonal = c.flatMap((row, i) => row.filter((_, j) => j !== i));
    let ce = 0, cyclip = 0;
    for (let i = 0; i < n; i++) ce += (logSumExp(c[i]) - c[i][i]) + (logSumExp(c.map(row => row[i])) - c[i][i]);
    for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) cyclip += (c[j][k] - c[k][j]) ** 2 + (gx[j][k] - gy[j][k]) ** 2;
    const ceMean = ce / (2 * n);
    return {
      gap: Math.hypot(mx[0] - my[0], mx[1] - my[1], mx[2] - my[2]),
      clustering: (uniformity(x) + uniformity(y)) / 2,
      ce: ceMean,
      ortho_intra: (ortho(gx, alpha, true) + ortho(gy, alpha, true)) / n2,
      ortho_inter: ortho(c, alpha, true) / n2,
      antipodal: (ortho(gx, alpha, false) + ortho(gy, alpha, false)) / n2,
      variance: -beta * (variance(offDiagonal) + variance(diagonal)),
      cyclip: cyclip / n2,
      thesis_ortho_intra: (ortho(gx, 0, true) + ortho(gy, 0, true)) / n2,
      thesis_ortho_inter: 2 * ortho(c, 0, true) / n2,
      thesis_cyclip: ceMean + cyclip / n2,
    };
  }
  const value = id => Number(document.getElementById(id).value);
  let drawSeed = 1;
  function update(newDraw) {
    if (newDraw && !document.getElementById("fixed_seed").checked) drawSeed = Math.floor(Math.random() * 2 ** 31);
    const random = mulberry32(drawSeed), n = value("n");
    const x = sampleCloud(n, value("kappa_x"), value("angle_x"), random), y = sampleCloud(n, value("kappa_y"), value("angle_y"), random);
    for (const id of SLIDER_IDS) document.getElementById(id + "_value").textContent = document.getElementById(id).value;
    const values = measure(x, y, value("alpha"), value("beta"));
    for (const [key, v] of Object.entries(values)) document.getElementById("value-" + key).textContent = v.toPrecision(4);
    const trace = (points, name, colour) => ({type: "scatter3d", mode: "markers", name, x: points.map(p => p[0]), y: points.map(p => p[1]), z: points.map(p => p[2]), marker: {size: 3, color: colour}});
    Plotly.react("sphere", [SPHERE, trace(x, "image", "#1f77b4"), trace(y, "text", "#ff7f0e")], LAYOUT);
    memegap.last = {x, y, values};
  }
  const SPHERE = (() => {
    const u = [], v = [], w = [];
    for (let i = 0; i <= 24; i++) { const ru = [], rv = [], rw = [], th = Math.PI * i / 24;
      for (let j = 0; j <= 48; j++) { const ph = 2 * Math.PI * j / 48; ru.push(Math.sin(th) * Math.cos(ph)); rv.push(Math.sin(th) * Math.sin(ph)); rw.push(Math.cos(th)); }
      u.push(ru); v.push(rv); w.push(rw); }
    return {type: "surface", x: u, y: v, z: w, opacity: 0.12, showscale: false, colorscale: [[0, "#888"], [1, "#888"]], hoverinfo: "skip"};
  })();
  const LAYOUT = {margin: {l: 0, r: 0, t: 0, b: 0}, scene: {aspectmode: "cube", xaxis: {range: [-1.1, 1.1]}, yaxis: {range: [-1.1, 1.1]}, zaxis: {range: [-1.1, 1.1]}}, legend: {x: 0, y: 1}};
  return {sampleCloud, measure, update, mulberry32};
})();
window.memegap = memegap;
document.querySelectorAll("input[type=range]").forEach(e => e.addEventListener("input", () => memegap.update(true)));
document.getElementById("fixed_seed").addEventListener("change", () => memegap.update(true));
memegap.update(false);
"""


def explorer_html() -> str:
    """The page's full text: controls, value table, plot, plotly.js and the script, in one file."""
    from plotly.offline import get_plotlyjs

    controls = "\n".join(
        f'<label for="{key}">{label}: <b id="{key}_value">{initial}</b></label>'
        f'<input type="range" id="{key}" min="{low}" max="{high}" step="{step}" value="{initial}">'
        for key, (label, low, high, step, initial) in SLIDERS.items()
    )
    rows = "\n".join(f'<tr><td>{key}</td><td id="value-{key}"></td></tr>' for key in MEASURES)
    script = f"const SLIDER_IDS = {json.dumps(list(SLIDERS))};\n" + SCRIPT
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>memegap: Power Spherical explorer</title>
<style>
body {{ font-family: sans-serif; margin: 12px; }} #layout {{ display: flex; gap: 16px; }}
#controls {{ width: 300px; display: flex; flex-direction: column; gap: 4px; }} #sphere {{ width: 620px; height: 560px; }}
table {{ border-collapse: collapse; margin-top: 8px; }} td {{ border-bottom: 1px solid #ddd; padding: 2px 8px; font-family: monospace; }}
</style></head>
<body><h3>Two modalities on the sphere (Power Spherical, d = 3)</h3>
<div id="layout"><div id="controls">
{controls}
<label><input type="checkbox" id="fixed_seed" checked> fixed seed (the same draw while parameters move)</label>
<table>{rows}</table>
<p style="font-size: small">Loss terms with reduction "mean" (÷ N²); ce at temperature 1; thesis_* are the readings of the thesis's Tables 5.3–5.4
(memegap/studies/modality_gap/power_spherical.py).</p>
</div><div id="sphere"></div></div>
<script>{get_plotlyjs()}</script>
<script>{script}</script>
</body></html>
"""


def write_explorer(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(explorer_html(), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the Power Spherical explorer page (one self-contained HTML file).")
    parser.add_argument("out", nargs="?", default="experiments/modality_gap/explorer.html", help="the HTML file to write")
    print(f"written to {write_explorer(parser.parse_args().out)}")


if __name__ == "__main__":
    main()
