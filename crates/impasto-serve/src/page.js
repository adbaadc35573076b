// impasto's web UI: the page's script (served as /page.js; the page has no inline code).
"use strict";
const $ = (s) => document.querySelector(s);
let limits = { max_upload_bytes: 32 << 20, max_size: 1024, max_iterations: 2000, max_styles: 8 };
let content = null, styles = [];
let job = null, source = null, steps = [], marks = [], state = "idle", plotQueued = false;

const fmt = (v) => v == null || !isFinite(v) ? "–" : Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(3) : v.toPrecision(4);
// The weights as sent: the defaults exactly, then 10^slider rounded to two digits (the sliders are log10).
const weights = { content: 5, style: 100, tv: 1e6 };
const sliders = { content: "#content-weight", style: "#style-weight", tv: "#tv-weight" };
const over = (s) => s === "finished" || s === "cancelled" || s === "failed";
function duration(s) {
  if (s == null || !isFinite(s)) return "–";
  s = Math.round(s);
  return s < 60 ? s + " s" : Math.floor(s / 60) + " min " + (s % 60) + " s";
}
function showError(message) { const e = $("#error"); e.textContent = message || ""; e.classList.toggle("shown", !!message); }

async function call(method, url, body) {
  const init = { method };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers = { "content-type": "application/json" }; }
  let r;
  try { r = await fetch(url, init); } catch (e) { throw new Error("the server cannot be reached (" + e.message + ")"); }
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!r.ok) throw new Error((json && json.error) || ("the server answered " + r.status));
  return json;
}

// ---- inputs
function setWeights(w) {
  Object.assign(weights, w);
  for (const k in sliders) $(sliders[k]).value = Math.log10(Math.max(weights[k], 1e-3)).toFixed(1);
}
function showValues() {
  $("#size-value").textContent = $("#size").value + " px";
  $("#iterations-value").textContent = $("#iterations").value;
  for (const k in sliders) $(sliders[k] + "-value").textContent = fmt(weights[k]);
}
const mib = (n) => (n / 1048576).toFixed(1) + " MiB";
function checkFile(f) {
  if (!f.type.startsWith("image/")) return f.name + " is not an image";
  if (f.size > limits.max_upload_bytes) return f.name + " is " + mib(f.size) + ", over the upload limit of " + mib(limits.max_upload_bytes);
  return null;
}
function thumb(f) { const i = document.createElement("img"); i.src = URL.createObjectURL(f); i.title = f.name; return i; }
function setContent(files) {
  const f = files[0]; if (!f) return;
  const bad = checkFile(f); if (bad) return showError(bad);
  showError(""); content = f; $("#content-thumbs").replaceChildren(thumb(f));
}
function addStyles(files) {
  for (const f of files) {
    const bad = checkFile(f); if (bad) return showError(bad);
    if (styles.length >= limits.max_styles) return showError("at most " + limits.max_styles + " style images");
    styles.push(f); $("#style-thumbs").append(thumb(f));
  }
  showError("");
}
function dropZone(zone, input, take) {
  input.addEventListener("change", () => { take(input.files); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); take(e.dataTransfer.files); });
}
dropZone($("#content-drop"), $("#content-file"), setContent);
dropZone($("#style-drop"), $("#style-file"), addStyles);
$("#clear-styles").onclick = () => { styles = []; $("#style-thumbs").replaceChildren(); };
for (const id of ["#size", "#iterations"]) $(id).addEventListener("input", showValues);

let steerTimer = null;
for (const k in sliders) {
  $(sliders[k]).addEventListener("input", () => {
    weights[k] = Number(Math.pow(10, parseFloat($(sliders[k]).value)).toPrecision(2));
    showValues();
    if (!job || over(state)) return;
    clearTimeout(steerTimer);
    steerTimer = setTimeout(steer, 150);
  });
}
async function steer() {
  try {
    await call("POST", "/api/jobs/" + job + "/weights", weights);
    showError("");
  } catch (e) { showError(e.message); }
}

// ---- run controls
$("#start").onclick = async () => {
  if (!content) return showError("add a content image first");
  if (!styles.length) return showError("add at least one style image");
  const total = styles.reduce((sum, s) => sum + s.size, content.size);
  if (total > limits.max_upload_bytes) return showError("the images are " + mib(total) + " together, over the upload limit of " + mib(limits.max_upload_bytes));
  const size = parseInt($("#size").value, 10);
  const settings = {
    size, iterations: parseInt($("#iterations").value, 10),
    content_weight: weights.content, style_weight: weights.style, tv_weight: weights.tv,
    optimizer: $("#optimizer").value, style_loss: $("#style-loss").value,
  };
  if ($("#multiscale").checked) settings.min_size = Math.max(32, Math.round(size / 2));
  const form = new FormData();
  form.append("content", content, content.name);
  for (const s of styles) form.append("style", s, s.name);
  form.append("settings", JSON.stringify(settings));
  showError(""); $("#start").disabled = true;
  try {
    const snap = await call("POST", "/api/jobs", form);
    listen(snap.id);
  } catch (e) { showError(e.message); $("#start").disabled = false; }
};
for (const action of ["pause", "resume", "cancel"]) {
  $("#" + action).onclick = async () => {
    // The event stream may already have reported the end (a cancel is often done before its reply
    // arrives): a reply never takes an ended run back to "running".
    try { const s = await call("POST", "/api/jobs/" + job + "/" + action); if (!over(state)) applyState(s); showError(""); } catch (e) { showError(e.message); }
  };
}

// ---- progress
function listen(id) {
  if (source) source.close();
  job = id; steps = []; marks = [];
  window.history.replaceState(null, "", "#job=" + id); // a reload reconnects to this run
  $("#preview").removeAttribute("src");
  $("#download").href = "/api/jobs/" + id + "/result.png";
  source = new EventSource("/api/jobs/" + id + "/events");
  source.onmessage = (m) => handle(JSON.parse(m.data));
  source.onerror = () => { if (!over(state)) $("#note").textContent = "connection lost, reconnecting…"; };
}
function handle(ev) {
  switch (ev.type) {
    case "snapshot":
      steps = ev.history; applyState(ev); showWeights(ev.weights);
      if (steps.length) showStep(steps[steps.length - 1]);
      if (ev.preview_frame) showPreview(ev.preview_frame);
      queuePlot(); break;
    case "state": applyState(ev); break;
    case "step":
      if (!steps.length || ev.iteration > steps[steps.length - 1].iteration) {
        if (steps.length && ev.scale !== steps[steps.length - 1].scale) marks.push({ at: ev.iteration, kind: "scale" });
        steps.push(ev);
      }
      showStep(ev); queuePlot(); break;
    case "preview": showPreview(ev.frame); break;
    case "weights":
      showWeights(ev.weights, ev.iteration); marks.push({ at: ev.iteration + 0.5, kind: "weights" }); queuePlot(); break;
  }
}
function applyState(s) {
  state = s.state;
  $("#state").textContent = s.state.replace("_", " ");
  $("#queue").textContent = s.state === "queued" && s.queue_position ? "#" + s.queue_position + " in line" : "–";
  if (s.error) showError(s.error);
  $("#note").textContent = s.note || "";
  const done = over(s.state);
  $("#start").disabled = !done && s.state !== "idle";
  $("#pause").disabled = s.state !== "running";
  $("#resume").disabled = s.state !== "paused";
  $("#cancel").disabled = done;
  if (done) { $("#eta").textContent = "–"; if (source) { source.close(); source = null; } }
}
function showStep(s) {
  $("#iteration").textContent = s.iteration + " / " + s.iterations;
  $("#scale").textContent = (s.scale + 1) + " / " + s.scales + " (" + s.width + "×" + s.height + ")";
  $("#loss-content").textContent = fmt(s.content);
  $("#loss-style").textContent = fmt(s.style);
  $("#loss-tv").textContent = fmt(s.tv);
  $("#eta").textContent = over(state) ? "–" : duration(s.eta_s);
}
function showPreview(frame) {
  $("#preview").src = "/api/jobs/" + job + "/preview.png?frame=" + frame;
  $("#download").classList.remove("disabled");
}
function showWeights(w, at) {
  $("#weights-in-force").textContent = "weights in force: content " + fmt(w.content) + ", style " + fmt(w.style) + ", TV " + fmt(w.tv) + (at ? " (since iteration " + at + ")" : "");
  $("#weights-in-force").dataset.style = w.style;
}

// ---- the loss plot (log scale), drawn by hand
function queuePlot() { if (!plotQueued) { plotQueued = true; requestAnimationFrame(() => { plotQueued = false; plot(); }); } }
function plot() {
  const c = $("#plot"), dpr = window.devicePixelRatio || 1;
  const W = c.clientWidth, H = c.clientHeight;
  c.width = W * dpr; c.height = H * dpr;
  const g = c.getContext("2d"); g.scale(dpr, dpr); g.clearRect(0, 0, W, H);
  const series = [["total", "#1d232a"], ["content", "#2a6fb0"], ["style", "#b3471d"], ["tv", "#3c8d4f"]];
  const pts = steps.filter((s) => s.total > 0);
  if (pts.length < 1) return;
  let lo = Infinity, hi = -Infinity;
  for (const s of pts) for (const [k] of series) if (s[k] > 0) { lo = Math.min(lo, Math.log10(s[k])); hi = Math.max(hi, Math.log10(s[k])); }
  lo = Math.floor(lo); hi = Math.ceil(hi); if (hi === lo) hi = lo + 1;
  const n = Math.max(pts[pts.length - 1].iterations, 2);
  const L = 44, R = 8, T = 20, B = 22;
  const x = (i) => L + (W - L - R) * (i - 1) / (n - 1);
  const y = (v) => T + (H - T - B) * (hi - Math.log10(v)) / (hi - lo);
  g.font = "11px system-ui, sans-serif"; g.fillStyle = "#66707a"; g.strokeStyle = "#e6e9ec"; g.lineWidth = 1;
  for (let e = lo; e <= hi; e++) {
    const yy = y(Math.pow(10, e));
    g.beginPath(); g.moveTo(L, yy); g.lineTo(W - R, yy); g.stroke();
    g.fillText("1e" + e, 4, yy + 4);
  }
  g.fillText("1", L, H - 6); g.fillText(String(n), W - R - 24, H - 6);
  for (const m of marks) {
    g.save(); g.setLineDash(m.kind === "scale" ? [2, 3] : [6, 4]); g.strokeStyle = "#9aa3ab";
    g.beginPath(); g.moveTo(x(m.at), T); g.lineTo(x(m.at), H - B); g.stroke(); g.restore();
  }
  series.forEach(([k, color], i) => {
    g.strokeStyle = color; g.lineWidth = k === "total" ? 2 : 1.5; g.beginPath();
    let started = false;
    for (const s of pts) {
      if (!(s[k] > 0)) { started = false; continue; }
      if (started) g.lineTo(x(s.iteration), y(s[k])); else { g.moveTo(x(s.iteration), y(s[k])); started = true; }
    }
    g.stroke();
    g.fillStyle = color; g.fillText(k, L + 8 + i * 58, 13);
  });
}
window.addEventListener("resize", queuePlot);

// ---- start-up: the server's limits and defaults
(async () => {
  try {
    const info = await call("GET", "/api/limits");
    limits = info.limits;
    $("#limits").textContent = "limits: " + info.text;
    $("#size").max = limits.max_size; $("#iterations").max = limits.max_iterations;
    $("#size").value = Math.min(info.defaults.size, limits.max_size);
    $("#iterations").value = Math.min(info.defaults.iterations, limits.max_iterations);
    setWeights({ content: info.defaults.content_weight, style: info.defaults.style_weight, tv: info.defaults.tv_weight });
  } catch (e) { showError(e.message); }
  showValues();
  const resumed = location.hash.match(/^#job=([0-9a-f]+)$/);
  if (resumed) listen(resumed[1]);
})();
