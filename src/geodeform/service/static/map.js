/* geodeform map page: form -> OGC API – Processes job, job list with progress, velocity overlay, time series.
 * Plain JS + Leaflet (vendored). Every text from the server or the user goes into the DOM through
 * textContent / attributes set by the DOM API, never through innerHTML. Every URL is relative to the page
 * (served at PREFIX/map), so that the page works under a reverse proxy's path prefix. */
"use strict";

(function () {
  const TOKEN_KEY = "geodeform.token";
  const NAMES_KEY = "geodeform.jobNames";
  const BASEMAP_KEY = "geodeform.basemap";
  const FINAL = new Set(["successful", "failed", "dismissed"]);
  const $ = (id) => document.getElementById(id);
  // Leaflet inserts string tooltips as HTML: give it elements holding plain text instead.
  const textNode = (text) => { const span = document.createElement("span"); span.textContent = text; return span; };

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    presets: {},
    jobs: new Map(),
    selected: null,
    pollTimer: null,
    autoShow: new Set(),
    overlay: null,
    overlayUrl: null,
    marker: null,
    jobsOffset: 0,
  };
  const JOBS_PAGE = 20;

  // ---------------------------------------------------------------- HTTP

  class ApiError extends Error {
    constructor(status, doc) {
      const problems = (doc && Array.isArray(doc.problems)) ? doc.problems : [];
      const detail = (doc && (doc.detail || doc.title)) || ("HTTP " + status);
      super(detail);
      this.status = status;
      this.problems = problems;
    }
  }

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers);
    if (state.token) opts.headers.Authorization = "Bearer " + state.token;
    const resp = await fetch(path, opts);
    if (!resp.ok) {
      let doc = null;
      try { doc = await resp.json(); } catch (e) { doc = null; }
      if (resp.status === 401) setWho("token refused: " + ((doc && doc.detail) || "unauthorized"), true);
      throw new ApiError(resp.status, doc);
    }
    return resp;
  }
  const getJSON = async (path) => (await api(path)).json();

  function showError(el, err) {
    el.replaceChildren();
    el.className = "status error";
    el.append(document.createTextNode(err.message || String(err)));
    if (err.problems && err.problems.length) {
      const ul = document.createElement("ul");
      for (const p of err.problems) {
        const li = document.createElement("li");
        li.textContent = String(p.input) + ": " + String(p.problem);
        ul.append(li);
      }
      el.append(ul);
    }
  }
  function showStatus(el, text, cls) {
    el.replaceChildren();
    el.className = "status " + (cls || "");
    el.textContent = text;
  }
  function setWho(text, bad) {
    const el = $("whoami");
    el.textContent = text;
    el.className = bad ? "error" : "muted";
  }

  // ---------------------------------------------------------------- map

  const map = L.map("map", { boxZoom: false, worldCopyJump: true, zoomSnap: 0.25 }).setView([20, 0], 2);
  L.control.scale({ imperial: false }).addTo(map);
  const graticule = L.layerGroup().addTo(map);
  const aoiLayer = L.layerGroup().addTo(map);
  const footprints = L.layerGroup().addTo(map);
  let basemap = null;

  function setBasemap(url) {
    if (basemap) { map.removeLayer(basemap); basemap = null; }
    const note = $("basemap-note");
    if (url) {
      basemap = L.tileLayer(url, { maxZoom: 19, attribution: "basemap: configured tile server" }).addTo(map);
      basemap.bringToBack();
      note.firstChild.textContent = "Basemap: configured tile URL. ";
    } else {
      note.firstChild.textContent = "Basemap off (offline): lon/lat graticule, AOI, tiles and results only. ";
    }
  }
  $("basemap-set").addEventListener("click", () => {
    const current = localStorage.getItem(BASEMAP_KEY) || "";
    const url = window.prompt("XYZ tile URL ({z}/{x}/{y}); empty for none", current);
    if (url === null) return;
    const clean = url.trim();
    if (clean && !/^https?:\/\/[^\s]+\{z\}[^\s]*$/.test(clean)) { window.alert("Not a tile URL with {z}/{x}/{y}"); return; }
    if (clean) localStorage.setItem(BASEMAP_KEY, clean); else localStorage.removeItem(BASEMAP_KEY);
    setBasemap(clean);
  });
  setBasemap(localStorage.getItem(BASEMAP_KEY) || "");

  function drawGraticule() {
    graticule.clearLayers();
    const b = map.getBounds();
    const span = Math.max(b.getEast() - b.getWest(), 1e-6);
    const steps = [30, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001];
    const step = steps.find((s) => span / s >= 4) || steps[steps.length - 1];
    const digits = Math.max(0, -Math.floor(Math.log10(step)));
    const south = Math.max(b.getSouth(), -85), north = Math.min(b.getNorth(), 85);
    const style = { color: "#b8c2cc", weight: 1, interactive: false };
    for (let lon = Math.ceil(b.getWest() / step) * step; lon <= b.getEast(); lon += step) {
      L.polyline([[south, lon], [north, lon]], style).addTo(graticule);
      label([south, lon], lon.toFixed(digits) + "°");
    }
    for (let lat = Math.ceil(south / step) * step; lat <= north; lat += step) {
      L.polyline([[lat, b.getWest()], [lat, b.getEast()]], style).addTo(graticule);
      label([lat, b.getWest()], lat.toFixed(digits) + "°");
    }
    function label(at, text) {
      const icon = L.divIcon({ className: "graticule-label", html: "", iconSize: null, iconAnchor: [-2, 14] });
      const m = L.marker(at, { icon: icon, interactive: false, keyboard: false }).addTo(graticule);
      m.getElement().textContent = text;
    }
  }
  map.on("moveend", drawGraticule);
  drawGraticule();

  // AOI box: "Draw box" button or shift-drag.
  let drawMode = false, drawStart = null, drawRect = null;
  $("draw-box").addEventListener("click", () => {
    drawMode = !drawMode;
    $("map").classList.toggle("drawing", drawMode);
    $("draw-box").textContent = drawMode ? "Drag on the map…" : "Draw box";
  });
  map.on("mousedown", (e) => {
    if (!(drawMode || (e.originalEvent && e.originalEvent.shiftKey))) return;
    map.dragging.disable();
    drawStart = e.latlng;
    aoiLayer.clearLayers();
    drawRect = L.rectangle(L.latLngBounds(drawStart, drawStart), { color: "#d7263d", weight: 2, fill: false })
      .addTo(aoiLayer);
  });
  map.on("mousemove", (e) => {
    if (drawStart && drawRect) drawRect.setBounds(L.latLngBounds(drawStart, e.latlng));
  });
  map.on("mouseup", (e) => {
    if (!drawStart) return;
    const bounds = L.latLngBounds(drawStart, e.latlng);
    drawStart = null;
    map.dragging.enable();
    drawMode = false;
    $("map").classList.remove("drawing");
    $("draw-box").textContent = "Draw box";
    suppressClick = true;
    setTimeout(() => { suppressClick = false; }, 50);
    const w = clampLon(bounds.getWest()), e_ = clampLon(bounds.getEast());
    if (e_ - w < 1e-6 || bounds.getNorth() - bounds.getSouth() < 1e-6) { aoiLayer.clearLayers(); return; }
    setBbox([w, bounds.getSouth(), e_, bounds.getNorth()]);
  });
  const clampLon = (v) => Math.max(-180, Math.min(180, v));

  function setBbox(bbox) {
    const ids = ["bbox-w", "bbox-s", "bbox-e", "bbox-n"];
    ids.forEach((id, i) => { $(id).value = bbox[i].toFixed(4); });
    drawAoi();
  }
  function readBbox() {
    const v = ["bbox-w", "bbox-s", "bbox-e", "bbox-n"].map((id) => $(id).value.trim());
    if (v.every((x) => x === "")) return null;
    const n = v.map(Number);
    if (v.some((x) => x === "") || n.some((x) => !Number.isFinite(x))) throw new Error("AOI box: give all four numbers (W, S, E, N)");
    return n;
  }
  function drawAoi() {
    aoiLayer.clearLayers();
    let bbox = null;
    try { bbox = readBbox(); } catch (e) { return; }
    if (!bbox) return;
    L.rectangle([[bbox[1], bbox[0]], [bbox[3], bbox[2]]], { color: "#d7263d", weight: 2, fill: false }).addTo(aoiLayer);
  }
  ["bbox-w", "bbox-s", "bbox-e", "bbox-n"].forEach((id) => $(id).addEventListener("change", drawAoi));

  const tileLayer = L.layerGroup().addTo(map);
  $("tile").addEventListener("change", async () => {
    tileLayer.clearLayers();
    const tile = $("tile").value.trim().toUpperCase();
    if (!tile) return;
    try {
      const feature = await getJSON("map/api/tiles/" + encodeURIComponent(tile));
      const layer = L.geoJSON(feature, { style: { color: "#7a3db8", weight: 2, fill: false } }).addTo(tileLayer);
      layer.bindTooltip(textNode("MGRS " + tile));
      map.fitBounds(layer.getBounds(), { padding: [20, 20] });
      showStatus($("form-status"), "", "");
    } catch (err) { showError($("form-status"), err); }
  });

  // ---------------------------------------------------------------- presets and form

  async function loadProcesses() {
    const doc = await (await fetch("processes", { headers: { Accept: "application/json" } })).json();
    const select = $("preset");
    select.replaceChildren();
    for (const p of doc.processes || []) {
      if (!(p.keywords || []).includes("workflow")) continue; // the form builds job configs
      const opt = document.createElement("option");
      opt.value = p.id;
      opt.textContent = p.title || p.id;
      select.append(opt);
    }
    select.dispatchEvent(new Event("change"));
  }
  $("preset").addEventListener("change", () => {
    const d = state.presets[$("preset").value];
    $("preset-help").textContent = d ? d.description : "";
    if (!d) return;
    $("pairs-mode").value = d.pairs.mode;
    $("pairs-min").value = d.pairs.min_range;
    $("pairs-max").value = d.pairs.max_range;
    $("pairs-direction").value = d.pairs.direction;
    $("method").value = d.matching.method;
    $("chip").value = d.matching.chip_size;
    $("step").value = d.matching.step;
  });
  document.querySelectorAll("input[name=source]").forEach((r) => r.addEventListener("change", () => {
    const search = document.querySelector("input[name=source]:checked").value === "search";
    $("search-fields").hidden = !search;
    $("inputs-fields").hidden = search;
  }));

  const num = (id) => { const v = $(id).value.trim(); return v === "" ? undefined : Number(v); };

  function buildInputs() {
    const inputs = { name: $("name").value.trim() };
    const source = document.querySelector("input[name=source]:checked").value;
    if (source === "search") {
      const aoi = {};
      const bbox = readBbox();
      const tile = $("tile").value.trim().toUpperCase();
      if (bbox) aoi.bbox = bbox;
      if (tile) aoi.tiles = [tile];
      inputs.search = {
        collection: $("collection").value, catalog: $("catalog").value.trim() || "earth-search",
        start: $("start").value, end: $("end").value, aoi: aoi, band: $("band").value.trim() || "B04",
        max_images: num("max_images"), max_aoi_cloud: num("max_aoi_cloud"),
      };
    } else {
      inputs.inputs = $("inputs").value.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
        const parts = line.split(/[\s,;]+/);
        return { path: parts[0], date: parts[1] || "" };
      });
    }
    inputs.pairs = {
      mode: $("pairs-mode").value, min_range: num("pairs-min"), max_range: num("pairs-max"),
      direction: $("pairs-direction").value,
    };
    inputs.matching = { method: $("method").value, chip_size: num("chip"), step: num("step") };
    const text = (id) => $(id).value.trim() || undefined;
    const masks = { glacier: text("mask-glacier"), stable: text("mask-stable") };
    if (masks.glacier || masks.stable) inputs.masks = masks;
    if (text("dem")) inputs.dem = text("dem");
    return JSON.parse(JSON.stringify(inputs)); // drops undefined
  }

  // Reset (not id="reset": that would hide form.reset): every field back to its HTML default, then the chosen preset's defaults; the AOI box goes too.
  $("form-reset").addEventListener("click", () => {
    const preset = $("preset").value;
    $("job-form").reset();
    $("preset").value = preset;
    $("preset").dispatchEvent(new Event("change"));
    document.querySelectorAll("input[name=source]")[0].dispatchEvent(new Event("change"));
    aoiLayer.clearLayers();
    tileLayer.clearLayers();
    showStatus($("form-status"), "", "");
  });

  $("job-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const status = $("form-status");
    if (!requireToken(status)) return;
    let inputs;
    try { inputs = buildInputs(); } catch (err) { showError(status, err); return; }
    const process = $("preset").value;
    $("submit").disabled = true;
    showStatus(status, "submitting…", "");
    try {
      const resp = await api("processes/" + encodeURIComponent(process) + "/execution", {
        method: "POST",
        headers: { "Content-Type": "application/json", Prefer: "respond-async" },
        body: JSON.stringify({ inputs: inputs }),
      });
      const job = await resp.json();
      rememberName(job.jobID, inputs.name);
      state.autoShow.add(job.jobID);
      showStatus(status, "job " + job.jobID.slice(0, 8) + " accepted", "ok");
      await refreshJobs();
    } catch (err) {
      showError(status, err);
    } finally {
      $("submit").disabled = false;
    }
  });

  function rememberName(id, name) {
    const names = JSON.parse(sessionStorage.getItem(NAMES_KEY) || "{}");
    names[id] = name;
    sessionStorage.setItem(NAMES_KEY, JSON.stringify(names));
  }
  const nameOf = (id) => JSON.parse(sessionStorage.getItem(NAMES_KEY) || "{}")[id];

  // ---------------------------------------------------------------- scenes

  $("find-scenes").addEventListener("click", async () => {
    const status = $("form-status");
    if (!requireToken(status)) return;
    const q = new URLSearchParams({
      collection: $("collection").value, catalog: $("catalog").value.trim() || "earth-search",
      start: $("start").value, end: $("end").value,
    });
    try {
      const bbox = readBbox();
      if (bbox) q.set("bbox", bbox.join(","));
    } catch (err) { showError(status, err); return; }
    const tile = $("tile").value.trim();
    if (tile) q.set("tile", tile);
    showStatus(status, "searching scenes…", "");
    try {
      const doc = await getJSON("map/api/scenes?" + q.toString());
      renderScenes(doc);
      showStatus(status, doc.message || "", "ok");
    } catch (err) { showError(status, err); }
  });

  function renderScenes(doc) {
    const body = document.querySelector("#scenes tbody");
    body.replaceChildren();
    footprints.clearLayers();
    const limit = num("max_aoi_cloud");
    for (const s of doc.scenes || []) {
      const tr = document.createElement("tr");
      const cells = [
        String(s.datetime || "").slice(0, 10), s.tile || "", s.orbit == null ? "" : String(s.orbit),
        fmt(s.cloud_cover), fmt(s.aoi_cloud_pct), fmt(s.aoi_valid_pct),
      ];
      for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
      tr.title = String(s.id) + (s.note ? " – " + s.note : "");
      if (limit !== undefined && s.aoi_cloud_pct != null && s.aoi_cloud_pct > limit) tr.className = "cloudy";
      body.append(tr);
      if (s.geometry) {
        L.geoJSON(s.geometry, { style: { color: "#5b7083", weight: 1, fill: false, dashArray: "3" } })
          .bindTooltip(textNode(String(s.id))).addTo(footprints);
      }
    }
    $("scenes-count").textContent = "(" + (doc.scenes || []).length + ")";
    $("scenes-panel").hidden = false;
  }
  const fmt = (v) => (v == null ? "–" : Number(v).toFixed(1));

  // ---------------------------------------------------------------- jobs

  async function refreshJobs() {
    if (!state.token) return;
    clearTimeout(state.pollTimer);
    let active = false;
    try {
      const doc = await getJSON("jobs?limit=" + JOBS_PAGE + "&offset=" + state.jobsOffset);
      const rels = new Set((doc.links || []).map((l) => l.rel));
      const count = (doc.jobs || []).length;
      if (!count && state.jobsOffset > 0) { // the last jobs of this page were deleted: one page back
        state.jobsOffset = Math.max(0, state.jobsOffset - JOBS_PAGE);
        return refreshJobs();
      }
      $("jobs-newer").disabled = state.jobsOffset === 0;
      $("jobs-older").disabled = !rels.has("next");
      $("jobs-range").textContent = count ? (state.jobsOffset + 1) + "–" + (state.jobsOffset + count) : "";
      const list = $("jobs");
      list.replaceChildren();
      state.jobs.clear();
      for (const job of doc.jobs || []) {
        state.jobs.set(job.jobID, job);
        list.append(jobItem(job));
        if (!FINAL.has(job.status)) active = true;
        if (job.status === "successful" && state.autoShow.has(job.jobID)) {
          state.autoShow.delete(job.jobID);
          selectJob(job.jobID);
        }
      }
      if (!list.children.length) {
        const li = document.createElement("li");
        li.className = "muted";
        li.textContent = "no jobs yet";
        list.append(li);
      }
    } catch (err) {
      if (err.status === 401) return;
    }
    state.pollTimer = setTimeout(refreshJobs, active ? 1000 : 10000);
  }
  $("jobs-refresh").addEventListener("click", refreshJobs);
  $("jobs-older").addEventListener("click", () => { state.jobsOffset += JOBS_PAGE; refreshJobs(); });
  $("jobs-newer").addEventListener("click", () => {
    state.jobsOffset = Math.max(0, state.jobsOffset - JOBS_PAGE);
    refreshJobs();
  });

  function jobItem(job) {
    const li = document.createElement("li");
    li.className = "job st-" + job.status + (job.jobID === state.selected ? " selected" : "");
    li.dataset.jobId = job.jobID;
    li.dataset.status = job.status;
    const head = document.createElement("div");
    head.className = "head";
    const title = document.createElement("span");
    const name = nameOf(job.jobID);
    title.textContent = (name ? name + " · " : "") + job.processID + " · " + job.jobID.slice(0, 8);
    const badge = document.createElement("span");
    badge.className = "badge status";
    badge.textContent = job.status;
    head.append(title, badge);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "progressbar");
    const pct = Math.max(0, Math.min(100, Number(job.progress) || 0));
    bar.setAttribute("aria-valuenow", String(pct));
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    const fill = document.createElement("div");
    fill.style.width = pct + "%";
    bar.append(fill);
    const msg = document.createElement("div");
    msg.className = "msg";
    msg.textContent = pct + " % · " + (job.message || "") + (job.created ? " · " + job.created.slice(0, 19).replace("T", " ") : "");
    li.append(head, bar, msg);
    const buttons = document.createElement("div");
    if (job.status === "successful") buttons.append(button("Show", () => selectJob(job.jobID), "show"));
    if (!FINAL.has(job.status) || job.status === "successful" || job.status === "failed") {
      buttons.append(button(FINAL.has(job.status) ? "Delete" : "Cancel", () => dismissJob(job.jobID), "dismiss"));
    }
    li.append(buttons);
    return li;
  }
  function button(text, onClick, cls) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "small " + (cls || "");
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }
  async function dismissJob(id) {
    if (!window.confirm("Dismiss job " + id.slice(0, 8) + " and delete its products?")) return;
    try { await api("jobs/" + encodeURIComponent(id), { method: "DELETE" }); } catch (err) { window.alert(err.message); }
    if (state.selected === id) clearSelection();
    refreshJobs();
  }

  // ---------------------------------------------------------------- a job's results

  function clearSelection() {
    state.selected = null;
    if (state.overlay) { map.removeLayer(state.overlay); state.overlay = null; }
    if (state.overlayUrl) { URL.revokeObjectURL(state.overlayUrl); state.overlayUrl = null; }
    if (state.marker) { map.removeLayer(state.marker); state.marker = null; }
    $("legend").hidden = true;
    $("results-panel").hidden = true;
  }

  async function selectJob(id) {
    clearSelection();
    state.selected = id;
    document.querySelectorAll("#jobs li.job").forEach((li) => li.classList.toggle("selected", li.dataset.jobId === id));
    $("results-job").textContent = (nameOf(id) ? nameOf(id) + " · " : "") + id.slice(0, 8);
    $("results-panel").hidden = false;
    $("chart-box").hidden = true;
    await Promise.all([showDownloads(id), showOverlay(id)]);
  }

  async function showDownloads(id) {
    const ul = $("downloads");
    ul.replaceChildren();
    try {
      const doc = await getJSON("jobs/" + encodeURIComponent(id) + "/results");
      for (const [key, r] of Object.entries(doc)) {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = r.href;
        a.className = "download";
        a.dataset.output = key;
        a.textContent = key;
        a.addEventListener("click", (ev) => { ev.preventDefault(); download(r.href, key); });
        const note = document.createElement("span");
        note.className = "muted small";
        note.textContent = " " + (r.title || "") + " (" + String(r.type || "").split(";")[0] + ")";
        li.append(a, note);
        ul.append(li);
      }
    } catch (err) {
      const li = document.createElement("li");
      li.className = "error";
      li.textContent = err.message;
      ul.append(li);
    }
  }

  async function download(href, key) {
    try {
      const resp = await api(href);
      const blob = await resp.blob();
      const cd = resp.headers.get("content-disposition") || "";
      const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd);
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = m ? decodeURIComponent(m[1]) : key;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (err) { window.alert("download failed: " + err.message); }
  }

  async function showOverlay(id) {
    const legend = $("legend");
    try {
      const meta = await getJSON("map/api/jobs/" + encodeURIComponent(id) + "/overlay.json");
      const png = await (await api("map/api/jobs/" + encodeURIComponent(id) + "/overlay.png")).blob();
      if (state.selected !== id) return;
      const [w, s, e, n] = meta.bounds;
      state.overlayUrl = URL.createObjectURL(png);
      state.overlay = L.imageOverlay(state.overlayUrl, [[s, w], [n, e]], { opacity: 0.85, className: "velocity-overlay" })
        .addTo(map);
      map.fitBounds([[s, w], [n, e]], { padding: [30, 30] });
      renderLegend(meta);
    } catch (err) {
      legend.replaceChildren();
      legend.textContent = "no velocity map: " + err.message;
      legend.hidden = false;
    }
  }

  function renderLegend(meta) {
    const legend = $("legend");
    legend.replaceChildren();
    const title = document.createElement("div");
    title.className = "legend-title";
    title.textContent = String(meta.title || "speed") + " (" + String(meta.units || "") + ")";
    const ramp = document.createElement("div");
    ramp.className = "ramp";
    const stops = (meta.stops || []).filter((c) => /^#[0-9a-fA-F]{6}$/.test(c));
    ramp.style.background = "linear-gradient(to right, " + stops.join(", ") + ")";
    const ticks = document.createElement("div");
    ticks.className = "ticks";
    const lo = document.createElement("span"), mid = document.createElement("span"), hi = document.createElement("span");
    lo.className = "legend-min"; hi.className = "legend-max";
    lo.textContent = String(meta.min);
    mid.textContent = String(+(meta.max / 2).toPrecision(3));
    hi.textContent = "≥ " + String(meta.max);
    ticks.append(lo, mid, hi);
    const note = document.createElement("div");
    note.className = "muted";
    note.textContent = "valid nodes " + meta.valid_pct + " % · " + (meta.colormap || "");
    legend.append(title, ramp, ticks, note);
    legend.hidden = false;
  }

  // ---------------------------------------------------------------- time series at a clicked point

  let suppressClick = false;
  map.on("click", async (e) => {
    if (suppressClick || drawMode || !state.selected) return;
    const id = state.selected;
    const q = new URLSearchParams({ lon: e.latlng.wrap().lng.toFixed(6), lat: e.latlng.lat.toFixed(6) });
    const box = $("chart-box");
    box.hidden = false;
    $("chart-title").textContent = "Time series: loading…";
    $("chart").replaceChildren();
    try {
      const doc = await getJSON("map/api/jobs/" + encodeURIComponent(id) + "/series?" + q.toString());
      if (state.selected !== id) return;
      if (state.marker) map.removeLayer(state.marker);
      state.marker = L.circleMarker([doc.node.lat, doc.node.lon], { radius: 6, color: "#000", weight: 2, fillColor: "#ff0", fillOpacity: 1 })
        .addTo(map);
      $("chart-title").textContent = "Time series at " + doc.node.lat.toFixed(5) + "°, " + doc.node.lon.toFixed(5) + "°";
      $("chart").append(chart(doc));
    } catch (err) {
      $("chart-title").textContent = "Time series: " + err.message;
    }
  });

  function chart(doc) {
    const NS = "http://www.w3.org/2000/svg";
    const W = 340, H = 210, L0 = 56, R0 = 10, T0 = 12, B0 = 36;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("class", "series-chart");
    const el = (tag, attrs, text) => {
      const node = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
      if (text !== undefined) node.textContent = text;
      svg.append(node);
      return node;
    };
    const t = doc.dates.map((d) => Date.parse(d + "T00:00:00Z"));
    const vals = doc.east.concat(doc.north).filter((v) => v !== null);
    let lo = Math.min(0, ...vals), hi = Math.max(0, ...vals);
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
    const t0 = Math.min(...t), t1 = Math.max(...t) === t0 ? t0 + 86400000 : Math.max(...t);
    const X = (v) => L0 + (W - L0 - R0) * (v - t0) / (t1 - t0);
    const Y = (v) => T0 + (H - T0 - B0) * (hi - v) / (hi - lo);
    for (let k = 0; k <= 4; k++) {
      const v = lo + (hi - lo) * k / 4;
      el("line", { x1: L0, x2: W - R0, y1: Y(v), y2: Y(v), class: "grid" });
      el("text", { x: L0 - 4, y: Y(v) + 3, "text-anchor": "end" }, v.toPrecision(3));
    }
    el("line", { x1: L0, x2: L0, y1: T0, y2: H - B0, class: "axis" });
    el("line", { x1: L0, x2: W - R0, y1: H - B0, y2: H - B0, class: "axis" });
    el("text", { x: L0, y: H - B0 + 13, "text-anchor": "start" }, doc.dates[0]);
    el("text", { x: W - R0, y: H - B0 + 13, "text-anchor": "end" }, doc.dates[doc.dates.length - 1]);
    el("text", { x: 9, y: T0 + (H - T0 - B0) / 2, transform: "rotate(-90 9 " + (T0 + (H - T0 - B0) / 2) + ")", "text-anchor": "middle" },
      "displacement (" + (doc.units || "m") + ")");
    for (const [key, cls] of [["east", "east"], ["north", "north"]]) {
      const pts = doc[key].map((v, i) => (v === null ? null : [X(t[i]), Y(v)])).filter(Boolean);
      if (pts.length > 1) el("polyline", { points: pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" "), class: cls });
      for (const p of pts) el("circle", { cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: 2.5, class: cls + "-pt" });
    }
    el("text", { x: L0 + 8, y: H - 8, class: "east-label", fill: "#d95f02" }, "— east");
    el("text", { x: L0 + 64, y: H - 8, class: "north-label", fill: "#1b9e77" }, "— north");
    el("text", { x: W - R0, y: H - 8, "text-anchor": "end" }, "node " + doc.distance_m + " m away");
    return svg;
  }

  // ---------------------------------------------------------------- token and start-up

  function requireToken(status) {
    if (state.token) return true;
    showError(status, new Error("enter your API token first (top right)"));
    $("token").focus();
    return false;
  }

  async function useToken(token) {
    state.token = token;
    try {
      await api("jobs?limit=1");
      sessionStorage.setItem(TOKEN_KEY, token);
      setWho("token accepted", false);
      const presets = await getJSON("map/api/presets");
      state.presets = presets.presets || {};
      $("preset").dispatchEvent(new Event("change"));
      refreshJobs();
    } catch (err) {
      state.token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      setWho(err.status === 401 ? "token refused" : err.message, true);
    }
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (token) useToken(token);
  });
  $("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = "";
    clearTimeout(state.pollTimer);
    clearSelection();
    $("jobs").replaceChildren();
    setWho("token forgotten", false);
  });

  loadProcesses().catch((err) => showError($("form-status"), err));
  if (state.token) useToken(state.token); else setWho("enter your API token", false);
})();
