"""GET /: a small upload page, no external assets. Labels and file names are put on
the page with textContent, never as HTML, so nothing in them can run."""
from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bucketeye</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; }
  #drop { border: 2px dashed #999; border-radius: 8px; padding: 1.5rem; text-align: center; }
  #preview { max-width: 100%; max-height: 16rem; display: none; margin: 1rem auto; }
  table { border-collapse: collapse; width: 100%; margin-top: 1rem; }
  td, th { padding: .3rem .5rem; border-bottom: 1px solid #ddd; text-align: left; }
  .bar { background: #4a7; height: .6rem; border-radius: 3px; }
  #error { color: #b00; }
  #timings { color: #666; font-size: .9rem; }
</style>
</head>
<body>
<h1>bucketeye</h1>
<div id="drop">
  <label for="file">Choose an image to classify</label><br>
  <input id="file" type="file" accept="image/*">
</div>
<img id="preview" alt="">
<p id="status" role="status"></p>
<p id="error" role="alert"></p>
<table id="results" hidden>
  <thead><tr><th>label</th><th>score</th><th></th></tr></thead>
  <tbody></tbody>
</table>
<p id="timings"></p>
<script>
const $ = (id) => document.getElementById(id);
$("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  $("error").textContent = ""; $("timings").textContent = ""; $("results").hidden = true;
  $("status").textContent = "Classifying " + file.name + "\\u2026";
  $("preview").src = URL.createObjectURL(file); $("preview").style.display = "block";
  try {
    const response = await fetch("?top_k=5", {method: "POST", body: file,
      headers: {"Content-Type": file.type || "application/octet-stream"}});
    const body = await response.json();
    if (!response.ok || body.error) { throw new Error((body.error || {}).message || response.statusText); }
    const prediction = body.predictions[0];
    if (prediction.error) { throw new Error(prediction.error.message); }
    const rows = $("results").querySelector("tbody");
    rows.replaceChildren();
    for (const p of prediction.predictions) {
      const tr = document.createElement("tr");
      const label = document.createElement("td"); label.textContent = p.label;
      const score = document.createElement("td"); score.textContent = p.score.toFixed(3);
      const barCell = document.createElement("td"); const bar = document.createElement("div");
      bar.className = "bar"; bar.style.width = Math.round(p.score * 100) + "%"; barCell.append(bar);
      tr.append(label, score, barCell); rows.append(tr);
    }
    $("results").hidden = false;
    $("status").textContent = file.name + ": " + prediction.top_label;
    const t = prediction.timings_ms;
    $("timings").textContent = "decode " + t.decode.toFixed(1) + " ms \\u00b7 queue " + t.queue.toFixed(1) +
      " ms \\u00b7 inference " + t.inference.toFixed(1) + " ms \\u00b7 total " + t.total.toFixed(1) + " ms \\u00b7 " +
      prediction.model.id;
  } catch (err) {
    $("status").textContent = "";
    $("error").textContent = "Could not classify " + file.name + ": " + err.message;
  }
});
</script>
</body>
</html>
"""

HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; img-src blob:; style-src 'unsafe-inline'; "
                               "script-src 'unsafe-inline'; connect-src 'self'",
    "X-Content-Type-Options": "nosniff",
}


def page():
    return PAGE, 200, HEADERS
