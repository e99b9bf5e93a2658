// genieworld play page: WebSocket client, key bindings, prompts, uploads, downloads.
// Protocol: see genieworld/play/server.py. Each frame arrives as a JSON "frame" text
// message followed by one binary message holding a PNG image.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("screen");
  const ctx = canvas.getContext("2d");
  const statusEl = $("status");

  // State visible to tests and curious users (window.genie in the console).
  const state = {
    session: null, info: null, ws: null, connected: false,
    framesReceived: 0, framesDrawn: 0, lastMeta: null, metas: [], errors: [],
    fps: 0, actionKeys: [], prompt: null, prompts: [],
  };
  window.genie = state;

  let pendingMeta = null;
  let drawSeq = 0;
  let lastDrawn = 0;
  const arrivals = [];
  let remapping = null; // action index waiting for a key
  let statusTimer = null;

  function setStatus(text, isError = false, sticky = false) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", isError);
    clearTimeout(statusTimer);
    if (!sticky && text) statusTimer = setTimeout(() => { statusEl.textContent = ""; }, 5000);
  }

  function setConn(on, text) {
    state.connected = on;
    const el = $("conn");
    el.textContent = text;
    el.className = "badge " + (on ? "on" : "off");
  }

  // ---------------------------------------------------------------- keys
  const KEY_LABELS = { " ": "Space", ArrowLeft: "\u2190", ArrowRight: "\u2192", ArrowUp: "\u2191", ArrowDown: "\u2193" };
  const keyLabel = (k) => (k == null ? "\u2013" : KEY_LABELS[k] || (k.length === 1 ? k.toUpperCase() : k));
  const normKey = (k) => (k.length === 1 ? k.toLowerCase() : k);

  function storageKey() {
    const names = state.info ? state.info.action_names.join("|") : "";
    return "genieworld.keys.v1." + names;
  }

  function defaultActionKeys() {
    const keys = new Array(state.info.num_actions).fill(null);
    for (const [k, a] of Object.entries(state.info.keymap)) {
      if (a >= 0 && a < keys.length && keys[a] === null) keys[a] = k;
    }
    return keys;
  }

  function loadActionKeys() {
    let keys = defaultActionKeys();
    try {
      const saved = JSON.parse(localStorage.getItem(storageKey()) || "null");
      if (Array.isArray(saved) && saved.length === keys.length &&
          saved.every((k) => k === null || (typeof k === "string" && k.length <= 20))) {
        keys = saved;
      }
    } catch (e) { /* ignore a corrupt entry */ }
    state.actionKeys = keys;
  }

  function saveActionKeys() {
    try { localStorage.setItem(storageKey(), JSON.stringify(state.actionKeys)); } catch (e) { /* private mode */ }
  }

  function renderKeys() {
    const body = $("keys").querySelector("tbody");
    body.textContent = "";
    state.info.action_names.forEach((name, i) => {
      const tr = document.createElement("tr");
      tr.dataset.action = String(i);
      const tdName = document.createElement("td");
      tdName.textContent = name === String(i) ? `action ${i}` : `${name} (${i})`;
      const tdKey = document.createElement("td");
      tdKey.className = "key";
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = remapping === i ? "press a key\u2026" : keyLabel(state.actionKeys[i]);
      b.classList.toggle("listening", remapping === i);
      b.addEventListener("click", () => { remapping = remapping === i ? null : i; renderKeys(); });
      tdKey.appendChild(b);
      tr.append(tdName, tdKey);
      body.appendChild(tr);
    });
  }

  function highlight(action) {
    for (const tr of $("keys").querySelectorAll("tr[data-action]")) {
      tr.classList.toggle("active", Number(tr.dataset.action) === action);
    }
  }

  document.addEventListener("keydown", (e) => {
    if (remapping !== null) {
      e.preventDefault();
      if (e.key !== "Escape") {
        const k = normKey(e.key);
        state.actionKeys = state.actionKeys.map((x) => (x === k ? null : x));
        state.actionKeys[remapping] = k;
        saveActionKeys();
      }
      remapping = null;
      renderKeys();
      return;
    }
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const action = state.actionKeys.indexOf(normKey(e.key));
    if (action < 0) return;
    e.preventDefault();
    if (!state.connected) { connect(); return; }
    sendAction(action);
  });

  $("keys-default").addEventListener("click", () => {
    state.actionKeys = defaultActionKeys();
    try { localStorage.removeItem(storageKey()); } catch (e) { /* ignore */ }
    renderKeys();
  });

  // ---------------------------------------------------------------- socket
  let nextId = 1;
  function send(obj) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
    state.ws.send(JSON.stringify(obj));
    return true;
  }
  function sendAction(action) { return send({ type: "action", action, id: nextId++ }); }
  function sendReset(prompt) {
    const msg = { type: "reset", id: nextId++ };
    if (prompt) msg.prompt = prompt;
    const seed = $("seed").value.trim();
    if (seed !== "") msg.seed = Number(seed);
    return send(msg);
  }
  state.sendAction = sendAction;
  state.sendReset = sendReset;

  function connect() {
    if (state.ws && (state.ws.readyState === WebSocket.OPEN || state.ws.readyState === WebSocket.CONNECTING)) return;
    const params = new URLSearchParams();
    const sid = sessionStorage.getItem("genieworld.session");
    if (sid) params.set("session", sid);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws?${params}`);
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    setConn(false, "connecting\u2026");
    ws.onopen = () => setConn(true, "connected");
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") onText(ev.data);
      else onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      state.ws = null;
      const why = ev.code === 1013 ? "the server is full; try again later"
        : ev.reason ? ev.reason.replace(/_/g, " ") : `connection closed (${ev.code})`;
      setConn(false, "disconnected");
      setStatus(`${why}. Press a key or click the picture to reconnect.`, ev.code !== 1000, true);
    };
  }
  canvas.addEventListener("click", () => { canvas.focus(); if (!state.connected) connect(); });

  function onText(text) {
    let msg;
    try { msg = JSON.parse(text); } catch (e) { return; }
    if (msg.type === "hello") {
      const first = !state.info;
      state.info = msg;
      state.session = msg.session;
      state.prompt = msg.prompt;
      sessionStorage.setItem("genieworld.session", msg.session);
      canvas.width = canvas.height = msg.image_size;
      $("model").textContent = `${msg.model} \u00b7 ${msg.num_actions} actions \u00b7 ${msg.image_size}px \u00b7 seed ${msg.seed}`;
      $("max-pending").textContent = String(msg.max_pending);
      $("dl-mp4").href = `/api/sessions/${encodeURIComponent(msg.session)}/recording.mp4`;
      $("dl-gif").href = `/api/sessions/${encodeURIComponent(msg.session)}/recording.gif`;
      if (first || state.actionKeys.length !== msg.num_actions) loadActionKeys();
      renderKeys();
      loadPrompts();
      setStatus(msg.resumed ? "resumed your session" : "connected: press a key to act", false);
    } else if (msg.type === "frame") {
      pendingMeta = msg;
    } else if (msg.type === "error") {
      state.errors.push(msg);
      if (state.errors.length > 50) state.errors.shift();
      setStatus(`server: ${msg.message}`, true);
    }
  }

  function onFrame(buf) {
    const meta = pendingMeta || {};
    pendingMeta = null;
    state.framesReceived += 1;
    state.lastMeta = meta;
    state.metas.push(meta);
    if (state.metas.length > 200) state.metas.shift();
    const seq = ++drawSeq;
    const now = performance.now();
    arrivals.push(now);
    while (arrivals.length && now - arrivals[0] > 2000) arrivals.shift();
    const span = arrivals.length > 1 ? (arrivals[arrivals.length - 1] - arrivals[0]) / 1000 : 0;
    state.fps = span > 0 ? (arrivals.length - 1) / span : 0;
    createImageBitmap(new Blob([buf], { type: "image/png" })).then((bmp) => {
      if (seq < lastDrawn) { bmp.close(); return; } // an older frame decoded late
      lastDrawn = seq;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(bmp, 0, 0, canvas.width, canvas.height);
      bmp.close();
      state.framesDrawn += 1;
      canvas.dataset.frames = String(state.framesDrawn);
      updateHud(meta);
    }).catch(() => setStatus("could not decode a frame", true));
  }

  function updateHud(meta) {
    $("fps").textContent = state.fps.toFixed(1);
    $("frame-index").textContent = meta.index ?? "\u2013";
    $("gen-ms").textContent = meta.gen_ms != null ? meta.gen_ms.toFixed(0) : "\u2013";
    $("latency").textContent = meta.latency_ms != null ? meta.latency_ms.toFixed(0) : "\u2013";
    $("pending").textContent = meta.pending ?? 0;
    $("dropped").textContent = meta.dropped ?? 0;
    $("last-action").textContent = meta.name != null ? meta.name : "\u2013";
    if (meta.action != null) highlight(meta.action);
    if (meta.reset && meta.prompt) { state.prompt = meta.prompt; markPrompt(); }
  }
  // fps decays to 0 when nothing arrives
  setInterval(() => {
    const now = performance.now();
    while (arrivals.length && now - arrivals[0] > 2000) arrivals.shift();
    if (arrivals.length < 2) { state.fps = 0; $("fps").textContent = "0.0"; }
  }, 500);

  // ---------------------------------------------------------------- prompts, upload, reset
  async function loadPrompts() {
    try {
      const r = await fetch("/api/prompts");
      const data = await r.json();
      state.prompts = data.prompts;
      const box = $("prompts");
      box.textContent = "";
      for (const p of data.prompts) {
        const b = document.createElement("button");
        b.type = "button";
        b.title = p.label;
        b.dataset.prompt = p.id;
        const img = document.createElement("img");
        img.src = p.thumbnail;
        img.alt = p.label;
        b.appendChild(img);
        b.addEventListener("click", () => { state.prompt = p.id; markPrompt(); sendReset(p.id); canvas.focus(); });
        box.appendChild(b);
      }
      markPrompt();
    } catch (e) {
      setStatus("could not load prompts", true);
    }
  }

  function markPrompt() {
    for (const b of $("prompts").querySelectorAll("button")) {
      b.classList.toggle("selected", b.dataset.prompt === state.prompt);
    }
  }

  $("reset").addEventListener("click", () => { sendReset(state.prompt); canvas.focus(); });

  $("upload").addEventListener("change", async (e) => {
    const file = e.target.files && e.target.files[0];
    e.target.value = "";
    if (!file) return;
    const limit = state.info ? state.info.limits.max_upload_bytes : 8 << 20;
    if (file.size > limit) { setStatus(`image too large (${file.size} bytes, limit ${limit})`, true); return; }
    setStatus("uploading\u2026");
    try {
      const r = await fetch("/api/upload", { method: "POST", body: file,
        headers: { "Content-Type": file.type || "application/octet-stream" } });
      const data = await r.json();
      if (!r.ok) { setStatus(`upload refused: ${data.detail}`, true); return; }
      state.prompt = data.prompt;
      await loadPrompts();
      sendReset(data.prompt);
      setStatus(`started from ${data.label}`);
      canvas.focus();
    } catch (err) {
      setStatus("upload failed", true);
    }
  });

  connect();
  canvas.focus();
})();
