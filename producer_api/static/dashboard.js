// calcstream live dashboard: plain JS, no build step, nothing loaded from outside.
//
// Results arrive over the WebSocket ({"type": "subscribe", "all": true}) at up to tens of
// thousands per second. Each message is folded into fixed-size aggregates at once (O(1): a
// per-second bin, a latency reservoir, a ring of recent rows), and the DOM is only touched
// once per animation frame, with tables redrawn at most a few times a second and capped in
// rows. /v1/stats is polled every second for the API's and the workers' own figures.
"use strict";

(() => {
  const BIN_MS = 1000;          // aggregation bin
  const BINS = 64;              // bins kept (a minute of history)
  const WINDOW_BINS = 10;       // latency and batch figures: last 10 s
  const RATE_MS = 5000;         // throughput: last 5 s
  const RESERVOIR = 2000;       // latency samples kept per bin (uniform reservoir)
  const ROWS = 25;              // recent results shown
  const ERROR_ROWS = 12;        // recent errors shown
  const TABLE_EVERY_MS = 250;   // table redraw at most this often
  const HISTORY = 60;           // sparkline points
  const BATCH_EDGES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
  const BATCH_LABELS = ["1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1k+"];

  const $ = (id) => document.getElementById(id);

  // ---- aggregation (called per message; constant work) ----------------------------------
  function newBin(start) {
    return { start, count: 0, batches: 0, maxBatch: 0, hist: new Float64Array(BATCH_EDGES.length),
             lat: new Float64Array(RESERVOIR), latSeen: 0 };
  }
  const bins = [];
  let current = newBin(Math.floor(Date.now() / BIN_MS) * BIN_MS);
  bins.push(current);

  const totals = { results: 0, ok: 0, error: 0, expired: 0, dropped: 0, errors: 0 };
  const recent = new Array(ROWS);     // ring of the newest results
  let recentHead = 0, recentCount = 0, recentVersion = 0;
  const errors = new Array(ERROR_ROWS);
  let errorHead = 0, errorCount = 0, errorVersion = 0;

  function binFor(now) {
    if (now - current.start >= BIN_MS) {
      current = newBin(Math.floor(now / BIN_MS) * BIN_MS);
      bins.push(current);
      if (bins.length > BINS) bins.shift();
    }
    return current;
  }

  function batchBucket(size) {
    let i = 0;
    while (i < BATCH_EDGES.length - 1 && size >= BATCH_EDGES[i + 1]) i++;
    return i;
  }

  function onResult(r, now) {
    const bin = binFor(now);
    bin.count++;
    totals.results++;
    if (r.status === "ok") totals.ok++;
    else if (r.status === "expired") totals.expired++;
    else totals.error++;
    const size = r.batch_size | 0;
    if (size > 0) {
      // A batch of n yields n results: each result stands for 1/n of a batch.
      bin.batches += 1 / size;
      bin.hist[batchBucket(size)] += 1 / size;
      if (size > bin.maxBatch) bin.maxBatch = size;
    }
    if (typeof r.completed_at === "number" && typeof r.enqueued_at === "number") {
      const ms = (r.completed_at - r.enqueued_at) * 1000;
      const k = bin.latSeen++;
      if (k < RESERVOIR) bin.lat[k] = ms;
      else {
        const j = Math.floor(Math.random() * (k + 1));
        if (j < RESERVOIR) bin.lat[j] = ms;
      }
    }
    recent[recentHead] = r;
    recentHead = (recentHead + 1) % ROWS;
    if (recentCount < ROWS) recentCount++;
    recentVersion++;
    if (r.status !== "ok") {
      totals.errors++;
      errors[errorHead] = r;
      errorHead = (errorHead + 1) % ERROR_ROWS;
      if (errorCount < ERROR_ROWS) errorCount++;
      errorVersion++;
    }
    dirty = true;
  }

  // ---- API key (an API with keys; kept for this tab only, never in a URL) -------------------
  const KEY_SLOT = "calcstream.api-key";
  let apiKey = sessionStorage.getItem(KEY_SLOT) || "";

  function authHeaders() {
    return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  }

  function askForKey(why) {
    $("key-form").hidden = false;
    $("key-state").textContent = why;
    document.body.dataset.auth = "needed";
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    apiKey = $("key-input").value.trim();
    sessionStorage.setItem(KEY_SLOT, apiKey);
    $("key-input").value = "";
    $("key-form").hidden = true;
    document.body.dataset.auth = "sent";
    if (socket) socket.close();
  });

  // ---- WebSocket ----------------------------------------------------------------------------
  let socket = null, retryMs = 500;

  function setWsState(state, text) {
    document.body.dataset.ws = state;
    const pill = $("ws-state");
    pill.dataset.state = state;
    pill.textContent = text;
  }

  function connect() {
    const url = new URL("v1/ws", document.baseURI);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(url);
    socket.onopen = () => {
      if (apiKey) socket.send(JSON.stringify({ type: "auth", key: apiKey, ref: "dashboard" }));
      socket.send(JSON.stringify({ type: "subscribe", all: true, ref: "dashboard" }));
    };
    socket.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "result") onResult(msg, Date.now());
      else if (msg.type === "error" && ["unauthorized", "forbidden"].includes(msg.error.code)) {
        askForKey(msg.error.message);
      }
      else if (msg.type === "dropped") { totals.dropped += msg.count; dirty = true; }
      else if (msg.type === "subscribed") { retryMs = 500; setWsState("open", "live"); }
    };
    socket.onclose = () => {
      setWsState("closed", `reconnecting in ${(retryMs / 1000).toFixed(1)} s`);
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    };
  }

  // ---- formatting ---------------------------------------------------------------------------
  const nf = new Intl.NumberFormat("en-US");
  function fmt(v, digits = 1) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (Math.abs(v) >= 1000) return nf.format(Math.round(v));
    return v.toFixed(digits);
  }
  function fmtMs(v) { return v === null || v === undefined ? "–" : fmt(v, v < 10 ? 2 : 1); }
  function fmtBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1048576).toFixed(1)} MiB`;
  }
  function fmtDuration(s) {
    if (s < 60) return `${Math.floor(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }
  function fmtResult(r) {
    const v = r.result;
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(6);
    if (Array.isArray(v)) {
      return Array.isArray(v[0]) ? `[${v.length}×${v[0].length} matrix]` : `[${v.length} values]`;
    }
    return String(v);
  }
  function clock(t) {
    const d = new Date(t * 1000);
    return d.toLocaleTimeString("en-GB", { hour12: false }) +
      "." + String(d.getMilliseconds()).padStart(3, "0");
  }
  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  }
  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    td.title = text;
    return td;
  }

  // ---- sparklines ---------------------------------------------------------------------------
  const series = { rate: [], latency: [], lag: [], loop: [] };
  function push(name, value) {
    const s = series[name];
    s.push(value);
    if (s.length > HISTORY) s.shift();
  }
  function spark(id, values) {
    const canvas = $(id);
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const points = values.map((v) => (v === null || v === undefined ? 0 : v));
    if (points.length < 2) return;
    const max = Math.max(...points) || 1;
    const step = w / (HISTORY - 1);
    const x0 = w - step * (points.length - 1);
    const y = (v) => h - 2 - (v / max) * (h - 14);
    const color = canvas.dataset.color || "#2563eb";
    ctx.beginPath();
    points.forEach((v, i) => (i ? ctx.lineTo(x0 + i * step, y(v)) : ctx.moveTo(x0, y(v))));
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.lineTo(x0 + (points.length - 1) * step, h);
    ctx.lineTo(x0, h);
    ctx.closePath();
    ctx.globalAlpha = 0.12;
    ctx.fillStyle = color;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.fillStyle = "#6b7280";
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillText(`max ${fmt(max)}`, 2, 10);
  }

  // ---- derived figures (every 500 ms) -------------------------------------------------------
  function windowBins(now, ms) {
    return bins.filter((b) => b.start > now - ms - BIN_MS);
  }
  function resultsRate(now) {
    const used = windowBins(now, RATE_MS);
    if (!used.length) return 0;
    const span = Math.max(now - used[0].start, BIN_MS);
    return used.reduce((n, b) => n + b.count, 0) / (span / 1000);
  }
  function percentiles(now) {
    const used = windowBins(now, WINDOW_BINS * BIN_MS);
    let n = 0;
    for (const b of used) n += Math.min(b.latSeen, RESERVOIR);
    if (!n) return null;
    const all = new Float64Array(n);
    let i = 0;
    for (const b of used) {
      const k = Math.min(b.latSeen, RESERVOIR);
      all.set(b.lat.subarray(0, k), i);
      i += k;
    }
    all.sort();
    const at = (q) => all[Math.min(n - 1, Math.floor(q * n))];
    return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
  }
  function batchFigures(now) {
    const used = windowBins(now, WINDOW_BINS * BIN_MS);
    const hist = new Float64Array(BATCH_EDGES.length);
    let batches = 0, results = 0, max = 0;
    for (const b of used) {
      batches += b.batches;
      results += b.count;
      max = Math.max(max, b.maxBatch);
      for (let i = 0; i < hist.length; i++) hist[i] += b.hist[i];
    }
    const span = used.length ? Math.max(now - used[0].start, BIN_MS) / 1000 : 1;
    return { mean: batches ? results / batches : null, rate: batches / span, max, hist };
  }

  const bars = [];
  function buildBars() {
    const holder = $("batch-bars");
    BATCH_LABELS.forEach((label) => {
      const bar = document.createElement("div");
      const tag = document.createElement("span");
      tag.textContent = label;
      bar.appendChild(tag);
      bar.title = `batch size ≥ ${label}`;
      holder.appendChild(bar);
      bars.push(bar);
    });
  }

  let latest = { rate: null, lat: null, batch: null };
  function derive() {
    const now = Date.now();
    latest = { rate: resultsRate(now), lat: percentiles(now), batch: batchFigures(now) };
    dirty = true;
  }
  function sample() {
    push("rate", latest.rate);
    push("latency", latest.lat ? latest.lat.p99 : null);
  }

  // ---- rendering (once per animation frame, when something changed) -------------------------
  let dirty = true, paused = false, tableAt = 0, shownRecent = -1, shownErrors = -1;

  function renderTables(now) {
    if (now - tableAt < TABLE_EVERY_MS) return;
    tableAt = now;
    if (!paused && shownRecent !== recentVersion) {
      shownRecent = recentVersion;
      const body = document.createElement("tbody");
      for (let i = 1; i <= recentCount; i++) {
        const r = recent[(recentHead - i + ROWS) % ROWS];
        const row = body.insertRow();
        cell(row, clock(r.completed_at));
        cell(row, r.id, "mono");
        cell(row, r.op);
        cell(row, r.status + (r.cached ? " (cached)" : ""), `status-${r.status}`);
        cell(row, r.status === "ok" ? fmtResult(r) : (r.error && r.error.code) || "");
        cell(row, String(r.batch_size), "num");
        cell(row, fmtMs(r.queue_ms), "num");
        cell(row, fmtMs(r.compute_ms), "num");
        cell(row, r.worker || "");
      }
      $("recent-results").replaceChild(body, $("recent-results").tBodies[0]);
    }
    if (shownErrors !== errorVersion) {
      shownErrors = errorVersion;
      const body = document.createElement("tbody");
      for (let i = 1; i <= errorCount; i++) {
        const r = errors[(errorHead - i + ERROR_ROWS) % ERROR_ROWS];
        const row = body.insertRow();
        cell(row, r.id, "mono");
        cell(row, r.op);
        const td = row.insertCell();
        const code = document.createElement("b");
        code.className = `status-${r.status}`;
        code.textContent = (r.error && r.error.code) || r.status;
        const message = document.createElement("span");
        message.className = "muted";
        message.textContent = (r.error && r.error.message) || "";
        td.append(code, message);
        td.title = `${code.textContent}: ${message.textContent}`;
      }
      $("recent-errors").replaceChild(body, $("recent-errors").tBodies[0]);
    }
  }

  function render(now) {
    setText("results-total", nf.format(totals.results));
    setText("results-rate", latest.rate === null ? "–" : fmt(latest.rate));
    setText("dropped", nf.format(totals.dropped));
    setText("error-count", totals.errors ? `(${nf.format(totals.errors)})` : "");
    const lat = latest.lat;
    setText("lat-p50", lat ? fmtMs(lat.p50) : "–");
    setText("lat-p95", lat ? fmtMs(lat.p95) : "–");
    setText("lat-p99", lat ? fmtMs(lat.p99) : "–");
    const batch = latest.batch;
    if (batch) {
      setText("batch-mean", batch.mean === null ? "–" : fmt(batch.mean));
      setText("batch-rate", fmt(batch.rate));
      setText("batch-max", batch.max ? String(batch.max) : "–");
      const top = Math.max(...batch.hist) || 1;
      bars.forEach((bar, i) => { bar.style.height = `${(batch.hist[i] / top) * 100}%`; });
    }
    renderTables(now);
  }

  function frame(now) {
    if (dirty) {
      dirty = false;
      render(now);
    }
    requestAnimationFrame(frame);
  }

  // ---- /v1/stats ----------------------------------------------------------------------------
  function renderStats(doc) {
    const api = doc.api;
    setText("api-id", api.id || "");
    setText("uptime", `up ${fmtDuration(api.uptime_s)}`);
    setText("api-rate", api.results_per_s === null ? "–" : `${fmt(api.results_per_s)}/s`);
    setText("accepted-rate", api.accepted_per_s === null ? "–" : fmt(api.accepted_per_s));
    const e2e = api.end_to_end_ms;
    setText("api-latency", e2e.p50 === null ? "–"
      : `${fmtMs(e2e.p50)} / ${fmtMs(e2e.p95)} / ${fmtMs(e2e.p99)}`);
    setText("api-accepted", nf.format(api.accepted));
    setText("api-rejected", nf.format(api.rejected));
    const byStatus = Object.entries(api.results).map(([k, v]) => `${k} ${nf.format(v)}`);
    setText("api-results", byStatus.join(" · ") || "0");
    const store = api.result_store;
    setText("api-store", store ? `${nf.format(store.ids)} ids, ${fmtBytes(store.bytes)}` : "–");
    setText("api-waiters", store ? nf.format(store.waiters) : "–");
    setText("api-ws", `${api.websocket.connections} open, ${nf.format(api.websocket.dropped)} dropped`);
    const loop = api.loop_lag_ms;
    setText("loop-lag", loop ? fmtMs(loop.p99_ms) : "–");
    setText("loop-lag-more", loop ? `${fmtMs(loop.p50_ms)} / ${fmtMs(loop.max_ms)} ms` : "–");
    push("loop", loop ? loop.p99_ms : null);

    const codes = Object.entries(api.rejected_by_code);
    const list = $("rejections");
    list.replaceChildren(...(codes.length ? codes : [["none", null]]).map(([code, n]) => {
      const li = document.createElement("li");
      li.textContent = n === null ? code : `${code}: ${nf.format(n)}`;
      return li;
    }));

    const workers = doc.workers;
    const up = workers.filter((w) => w.up);
    setText("consumer-lag", doc.consumer_lag === null ? "–" : nf.format(doc.consumer_lag));
    push("lag", doc.consumer_lag);
    setText("workers-up", workers.length ? `${up.length} of ${workers.length}` : "–");
    setText("in-flight", up.length ? String(up.reduce((n, w) => n + w.in_flight, 0)) : "–");
    const loops = up.map((w) => w.loop_lag_p99_ms).filter((v) => v !== null);
    setText("loop-lag-workers", loops.length ? `${fmtMs(Math.max(...loops))} ms` : "–");
    if (workers.length) {
      const body = document.createElement("tbody");
      for (const w of workers) {
        const row = body.insertRow();
        cell(row, w.worker || w.url, "mono");
        cell(row, w.up ? "up" : `down: ${w.error}`, w.up ? "up" : "down");
        cell(row, fmt(w.records_per_s), "num");
        cell(row, w.up ? nf.format(w.consumer_lag) : "–", "num");
        cell(row, w.up ? String(w.in_flight) : "–", "num");
        cell(row, fmt(w.batch_size_mean), "num");
        cell(row, w.compute_p99_ms === null ? "–" : `${fmtMs(w.compute_p99_ms)} ms`, "num");
        cell(row, w.loop_lag_p99_ms === null ? "–" : `${fmtMs(w.loop_lag_p99_ms)} ms`, "num");
        cell(row, w.up ? nf.format(w.dead_letters) : "–", "num");
      }
      $("workers").replaceChild(body, $("workers").tBodies[0]);
    }
  }

  async function poll() {
    try {
      const response = await fetch(new URL("v1/stats", document.baseURI),
                                   { cache: "no-store", headers: authHeaders() });
      if (response.ok) {
        renderStats(await response.json());
        document.body.dataset.stats = "ok";
        document.body.dataset.auth = apiKey ? "ok" : "open";
      } else if (response.status === 401 || response.status === 403) {
        const doc = await response.json().catch(() => ({}));
        askForKey((doc.error && doc.error.message) || `http ${response.status}`);
        document.body.dataset.stats = `http ${response.status}`;
      } else {
        document.body.dataset.stats = `http ${response.status}`;
      }
    } catch (err) {
      document.body.dataset.stats = "unreachable";
    }
    setTimeout(poll, 1000);
  }

  // ---- start --------------------------------------------------------------------------------
  buildBars();
  $("pause").addEventListener("click", (event) => {
    paused = !paused;
    event.target.setAttribute("aria-pressed", String(paused));
    event.target.textContent = paused ? "resume" : "pause";
  });
  setInterval(derive, 500);
  setInterval(() => {
    sample();
    spark("spark-rate", series.rate);
    spark("spark-latency", series.latency);
    spark("spark-lag", series.lag);
    spark("spark-loop", series.loop);
  }, 1000);
  connect();
  poll();
  requestAnimationFrame(frame);
})();
