// The faststyle page: plain JavaScript against the server's own API, nothing fetched elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: localStorage.getItem("faststyle.token") || "",
  model: null,
  file: null,
  request: null, // AbortController of the photo request in flight
  resultUrl: null,
  originalUrl: null,
  live: null, // the camera session
};

function authHeaders() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

function setStatus(id, text, isError) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (_) { /* not JSON */ }
  return response.status + " " + response.statusText;
}

// ---- styles ---------------------------------------------------------------------------

async function loadModels() {
  setStatus("styles-status", "Loading styles…");
  let response;
  try {
    response = await fetch("v1/models", { headers: authHeaders() });
  } catch (e) {
    setStatus("styles-status", "Cannot reach the server: " + e.message, true);
    return;
  }
  if (response.status === 401) {
    $("token-form").hidden = false;
    setStatus("styles-status", state.token ? "That token was not accepted." : "", !!state.token);
    $("token").focus();
    return;
  }
  if (!response.ok) {
    setStatus("styles-status", await errorText(response), true);
    return;
  }
  $("token-form").hidden = true;
  const models = await response.json();
  const list = $("styles");
  list.replaceChildren();
  for (const model of models) list.append(styleCard(model));
  setStatus("styles-status", models.length ? "" : "This server has no styles.");
  if (models.length) select(models[0].name);
}

function styleCard(model) {
  const card = document.createElement("button");
  card.type = "button";
  card.className = "style";
  card.setAttribute("role", "radio");
  card.setAttribute("aria-checked", "false");
  card.dataset.model = model.name;
  card.title = model.style_image ? model.name + " (" + model.style_image + ")" : model.name;
  const img = document.createElement("img");
  img.alt = "";
  const label = document.createElement("span");
  label.textContent = model.name;
  card.append(img, label);
  card.addEventListener("click", () => select(model.name));
  // Fetched with the token (an <img src> could not send it).
  fetch("v1/preview?model=" + encodeURIComponent(model.name), { headers: authHeaders() })
    .then((r) => (r.ok ? r.blob() : null))
    .then((blob) => { if (blob) img.src = URL.createObjectURL(blob); })
    .catch(() => {});
  return card;
}

function select(name) {
  state.model = name;
  for (const card of $("styles").children) {
    card.setAttribute("aria-checked", String(card.dataset.model === name));
  }
  stylizePhoto();
  updateLive();
}

// ---- options --------------------------------------------------------------------------

function options() {
  const params = new URLSearchParams();
  params.set("model", state.model);
  const strength = Number($("strength").value) / 100;
  if (strength < 1) params.set("strength", String(strength));
  if ($("preserve").checked) params.set("preserve_color", "true");
  return params;
}

let debounce = null;
function optionsChanged() {
  $("strength-value").textContent = $("strength").value + "%";
  clearTimeout(debounce);
  debounce = setTimeout(() => { stylizePhoto(); updateLive(); }, 250);
}

// ---- photo ----------------------------------------------------------------------------

function useFile(file) {
  if (!file) return;
  state.file = file;
  if (state.originalUrl) URL.revokeObjectURL(state.originalUrl);
  state.originalUrl = URL.createObjectURL(file);
  $("original").src = state.originalUrl;
  $("original").hidden = false;
  $("drop").querySelector(".placeholder").hidden = true;
  stylizePhoto();
}

const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif",
  "image/bmp": "bmp", "image/tiff": "tif" };

async function stylizePhoto(attempt = 0) {
  if (!state.file || !state.model) return;
  if (state.request) state.request.abort();
  const request = new AbortController();
  state.request = request;
  const params = options();
  const size = $("size").value;
  if (size) params.set("max_size", size);
  $("spinner").hidden = false;
  setStatus("photo-status", "Stylizing…");
  const started = performance.now();
  try {
    const response = await fetch("v1/stylize?" + params, {
      method: "POST", body: state.file, headers: authHeaders(), signal: request.signal,
    });
    if (response.status === 503 && attempt < 5) {
      const wait = Number(response.headers.get("Retry-After") || "1");
      setStatus("photo-status", "The server is busy; trying again in " + wait + " s…");
      await new Promise((ok) => setTimeout(ok, wait * 1000));
      if (state.request === request) stylizePhoto(attempt + 1);
      return;
    }
    if (response.status === 401) { $("token-form").hidden = false; }
    if (!response.ok) throw new Error(await errorText(response));
    const blob = await response.blob();
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    state.resultUrl = URL.createObjectURL(blob);
    const result = $("result");
    result.src = state.resultUrl;
    await result.decode().catch(() => {});
    result.hidden = false;
    $("result-placeholder").hidden = true;
    // On a phone the result is below the photo: bring it into view.
    if (window.matchMedia("(max-width: 700px)").matches) result.scrollIntoView({ behavior: "smooth", block: "nearest" });
    const link = $("download");
    const stem = (state.file.name || "photo").replace(/\.[^.]*$/, "");
    link.href = state.resultUrl;
    link.download = stem + "-" + state.model.replace(/\//g, "-") + "." + (EXTENSIONS[blob.type] || "png");
    link.hidden = false;
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    setStatus("photo-status", "Stylized · " + result.naturalWidth + "×" + result.naturalHeight + " in " + seconds + " s");
  } catch (e) {
    if (e.name === "AbortError") return;
    setStatus("photo-status", e.message, true);
  } finally {
    if (state.request === request) { $("spinner").hidden = true; state.request = null; }
  }
}

function setUpDrop() {
  const drop = $("drop");
  const choose = () => $("file").click();
  drop.addEventListener("click", choose);
  $("choose").addEventListener("click", choose);
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); choose(); } });
  $("file").addEventListener("change", (e) => useFile(e.target.files[0]));
  // A photo may be dropped anywhere on the page.
  for (const type of ["dragenter", "dragover"]) {
    window.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  window.addEventListener("dragleave", (e) => { if (!e.relatedTarget) drop.classList.remove("over"); });
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) { showTab("photo"); useFile(e.dataTransfer.files[0]); }
  });
  // Pasting an image works too.
  window.addEventListener("paste", (e) => {
    const item = [...e.clipboardData.items].find((i) => i.type.startsWith("image/"));
    if (item) { showTab("photo"); useFile(item.getAsFile()); }
  });
}

// ---- camera ---------------------------------------------------------------------------

const LIVE_WIDTH = 480; // frames are scaled to this width before they are sent
const LIVE_IN_FLIGHT = 2; // frames sent and not yet answered

async function startLive() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("live-status", "This browser cannot open a camera here (it needs https or localhost).", true);
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
    });
  } catch (e) {
    setStatus("live-status", "No camera: " + e.message, true);
    return;
  }
  const video = $("video");
  video.srcObject = stream;
  await video.play().catch(() => {});
  const params = options();
  params.set("quality", "80");
  if (state.token) params.set("access_token", state.token);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const base = location.pathname.replace(/[^/]*$/, "");
  const socket = new WebSocket(scheme + "//" + location.host + base + "v1/live?" + params);
  socket.binaryType = "blob";
  const live = { stream, socket, inFlight: 0, sentAt: [], shown: [], timer: null, url: null, canvas: document.createElement("canvas") };
  state.live = live;
  $("live-toggle").textContent = "Stop camera";
  setStatus("live-status", "Connecting…");
  socket.onopen = () => { setStatus("live-status", "Stylized"); pump(live); };
  socket.onclose = (e) => {
    if (state.live === live) {
      stopLive();
      setStatus("live-status", e.reason ? "Stopped: " + e.reason : "The connection closed.", !e.wasClean);
    }
  };
  socket.onmessage = (e) => onLiveMessage(live, e.data);
}

function pump(live) {
  if (state.live !== live || live.socket.readyState !== WebSocket.OPEN) return;
  const video = $("video");
  if (live.inFlight < LIVE_IN_FLIGHT && video.videoWidth > 0) {
    const scale = Math.min(1, LIVE_WIDTH / video.videoWidth);
    live.canvas.width = Math.round(video.videoWidth * scale);
    live.canvas.height = Math.round(video.videoHeight * scale);
    live.canvas.getContext("2d").drawImage(video, 0, 0, live.canvas.width, live.canvas.height);
    live.inFlight++;
    live.sentAt.push(performance.now());
    live.canvas.toBlob((blob) => {
      if (blob && live.socket.readyState === WebSocket.OPEN) live.socket.send(blob);
      else live.inFlight--;
    }, "image/jpeg", 0.8);
  }
  requestAnimationFrame(() => pump(live));
}

function onLiveMessage(live, data) {
  live.inFlight = Math.max(0, live.inFlight - 1);
  const sent = live.sentAt.shift();
  if (typeof data === "string") {
    const note = JSON.parse(data);
    if (note.error) setStatus("live-status", note.error, true);
    return; // {"dropped": 1}: a newer frame replaced this one
  }
  setStatus("live-status", "Stylized");
  const now = performance.now();
  live.shown.push(now);
  while (live.shown.length && now - live.shown[0] > 2000) live.shown.shift();
  const fps = live.shown.length > 1 ? (live.shown.length - 1) / ((now - live.shown[0]) / 1000) : 0;
  const delay = sent ? Math.round(now - sent) : 0;
  $("fps").textContent = fps.toFixed(1) + " frames/s · " + delay + " ms delay";
  const img = $("live-result");
  const old = live.url;
  live.url = URL.createObjectURL(data);
  img.src = live.url;
  if (old) URL.revokeObjectURL(old);
}

function updateLive() {
  const live = state.live;
  if (!live || live.socket.readyState !== WebSocket.OPEN) return;
  const params = options();
  if (!params.has("strength")) params.set("strength", "1");
  params.set("preserve_color", String($("preserve").checked));
  live.socket.send(params.toString());
}

function stopLive() {
  const live = state.live;
  if (!live) return;
  state.live = null;
  live.stream.getTracks().forEach((t) => t.stop());
  if (live.socket.readyState <= WebSocket.OPEN) live.socket.close();
  $("video").srcObject = null;
  $("live-toggle").textContent = "Start camera";
  $("fps").textContent = "";
}

// ---- tabs and start -------------------------------------------------------------------

function showTab(name) {
  const photo = name === "photo";
  $("photo").hidden = !photo;
  $("live").hidden = photo;
  $("tab-photo").setAttribute("aria-selected", String(photo));
  $("tab-live").setAttribute("aria-selected", String(!photo));
  $("size-control").hidden = !photo;
  if (photo) stopLive();
}

$("tab-photo").addEventListener("click", () => showTab("photo"));
$("tab-live").addEventListener("click", () => showTab("live"));
$("live-toggle").addEventListener("click", () => (state.live ? stopLive() : startLive()));
$("strength").addEventListener("input", optionsChanged);
$("preserve").addEventListener("change", optionsChanged);
$("size").addEventListener("change", () => stylizePhoto());
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value.trim();
  localStorage.setItem("faststyle.token", state.token);
  loadModels();
});
setUpDrop();
loadModels();
