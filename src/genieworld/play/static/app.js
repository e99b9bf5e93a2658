// genieworld play page: WebSocket client, key bindings, action buttons, prompts, uploads, downloads.
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
    fps: 0, idle: true, actionKeys: [], prompt: null, prompts: [],
    // live figures: fps = action frames over the last fpsWindowMs (at most since play resumed);
    // "idle" once no key or button was pressed for idleMs and no frame came for a second
    fpsWindowMs: 5000, idleMs: 3000, lastInput: -Infinity, activeSince: -Infinity, inputs: 0,
  };
  window.genie = state;

  let pendingMeta = null;
  let drawSeq = 0;
  let lastDrawn = 0;
  const arrivals = []; // performance.now() of recent action frames
  let lastArrival = -Infinity;
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

  // The server's keymap may give an action more keys than one (the up arrow, space and W all jump).
  // The first is the action's own, remappable key; the others still play it while that action keeps
  // its default key and nothing else was bound to them.
  function keyAliases() {
    const first = defaultActionKeys();
    const aliases = {};
    for (const [k, a] of Object.entries(state.info.keymap)) {
      if (a >= 0 && a < first.length && first[a] !== k && state.actionKeys[a] === first[a] &&
          !state.actionKeys.includes(k)) aliases[k] = a;
    }
    return aliases;
  }

  function aliasesOf(action) {
    return Object.entries(keyAliases()).filter(([, a]) => a === action).map(([k]) => keyLabel(k));
  }

  function actionForKey(key) {
    const k = normKey(key);
    const i = state.actionKeys.indexOf(k);
    if (i >= 0) return i;
    const a = keyAliases()[k];
    return a === undefined ? -1 : a;
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
      const also = aliasesOf(i);
      if (also.length) {
        const small = document.createElement("small");
        small.className = "alias";
        small.textContent = "also " + also.join(", ");
        tdKey.appendChild(small);
      }
      tr.append(tdName, tdKey);
      body.appendChild(tr);
    });
    renderPad();
  }

  function highlight(action) {
    for (const el of document.querySelectorAll("#keys tr[data-action], #pad button[data-action]")) {
      el.classList.toggle("active", Number(el.dataset.action) === action);
    }
  }

  // ---------------------------------------------------------------- on-screen buttons
  // One button per action, showing its name and key. Laid out like a game pad when the names
  // say where they go (Left / Stay / Right below, their jumps above, or arrows), else in a row.
  function padCell(name) {
    const up = String(name).toUpperCase().replace(/#\d+$/, "");
    const col = /LEFT/.test(up) ? 1 : /RIGHT/.test(up) ? 3 : 2;
    const row = /JUMP|UP/.test(up) ? 1 : 2;
    return [row, col];
  }

  let hold = null; // {action, button, since, sentId, sentAt, pointer} while a button is held down
  const HOLD_DELAY_MS = 300;

  function press(action) {
    noteInput();
    flash(action);
    if (!state.connected) { connect(); return null; }
    const id = nextId;
    return sendAction(action) ? id : null; // the id its frame will carry
  }

  function flash(action) {
    const b = $("pad").querySelector(`button[data-action="${action}"]`);
    if (!b) return;
    b.classList.add("down");
    clearTimeout(b._flash);
    b._flash = setTimeout(() => { if (!hold || hold.button !== b) b.classList.remove("down"); }, 150);
  }

  function endHold() {
    if (!hold) return;
    hold.button.classList.remove("down");
    hold = null;
  }

  // holding a button repeats its action, one press per frame (the next once the last one's frame is back)
  setInterval(() => {
    const now = performance.now();
    if (!hold || now - hold.since < HOLD_DELAY_MS) return;
    const m = state.lastMeta;
    const back = m && typeof m.id === "number" && m.id >= hold.sentId;
    if (hold.sentId != null && !back && now - hold.sentAt < 2000) return; // (a lost reply: go on after 2 s)
    hold.sentId = press(hold.action);
    hold.sentAt = now;
  }, 40);

  function renderPad() {
    const pad = $("pad");
    pad.textContent = "";
    const names = state.info.action_names;
    const cells = names.map(padCell);
    const grid = new Set(cells.map(([r, c]) => `${r},${c}`)).size === names.length;
    pad.classList.toggle("grid", grid);
    names.forEach((name, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "act";
      b.dataset.action = String(i);
      const label = name === String(i) ? `action ${i}` : name;
      const key = keyLabel(state.actionKeys[i]);
      b.title = `${label} (key ${[key, ...aliasesOf(i)].join(", ")})`;
      b.setAttribute("aria-label", b.title);
      if (grid) { b.style.gridRow = String(cells[i][0]); b.style.gridColumn = String(cells[i][1]); }
      const span = document.createElement("span");
      span.className = "name";
      span.textContent = label;
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      b.append(span, kbd);
      b.addEventListener("pointerdown", (e) => {
        if (e.pointerType === "mouse" && e.button !== 0) return;
        e.preventDefault(); // no text selection, no focus theft from the picture
        endHold();
        hold = { action: i, button: b, since: performance.now(), sentId: null, sentAt: performance.now(),
                 pointer: e.pointerId };
        b.classList.add("down");
        try { b.setPointerCapture(e.pointerId); } catch (err) { /* synthetic events */ }
        hold.sentId = press(i);
      });
      for (const ev of ["pointerup", "pointercancel", "lostpointercapture"]) {
        b.addEventListener(ev, (e) => { if (hold && hold.button === b && hold.pointer === e.pointerId) endHold(); });
      }
      // Enter / Space on a focused button (keyboard users, screen readers): a click without a pointer
      b.addEventListener("click", (e) => { if (e.detail === 0) press(i); });
      b.addEventListener("contextmenu", (e) => e.preventDefault()); // long press on touch screens
      pad.appendChild(b);
    });
    if (state.lastMeta && state.lastMeta.action != null) highlight(state.lastMeta.action);
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
    const action = actionForKey(e.key);
    if (action < 0) return;
    e.preventDefault();
    press(action);
  });

  window.addEventListener("blur", endHold);

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
      $("model").textContent = `${msg.model} \u00b7 ${msg.num_actions} actions \u00b7 ${msg.image_size}px \u00b7 seed ${msg.seed}`
        + (msg.precision ? ` \u00b7 ${msg.precision}${msg.compiled ? ", compiled" : ""}` : "");
      $("max-pending").textContent = String(msg.max_pending);
      $("gravity").hidden = msg.gravity !== true;
      $("dl-mp4").href = `/api/sessions/${encodeURIComponent(msg.session)}/recording.mp4`;
      $("dl-gif").href = `/api/sessions/${encodeURIComponent(msg.session)}/recording.gif`;
      if (first || state.actionKeys.length !== msg.num_actions) loadActionKeys();
      renderKeys();
      loadPrompts();
      setStatus(msg.resumed ? "resumed your session" : "connected: press a key or a button to act", false);
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
    if (meta.action != null) {
      lastArrival = performance.now();
      arrivals.push(lastArrival);
    }
    updateFps();
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

  function noteInput() {
    const now = performance.now();
    if (state.idle) state.activeSince = now; // play (re)starts: rate over the time since
    state.lastInput = now;
    state.inputs += 1;
    state.idle = false;
    showFps();
  }

  // the rate of recent action frames: those of the last fpsWindowMs, over the time they span up to
  // now (so it falls when frames stop coming), counted from when play resumed (no idle time inside)
  function updateFps() {
    const now = performance.now();
    while (arrivals.length && now - arrivals[0] > state.fpsWindowMs) arrivals.shift();
    const since = Math.max(now - state.fpsWindowMs, state.activeSince);
    const span = Math.max(now - since, 500) / 1000;
    state.fps = arrivals.filter((t) => t >= since).length / span;
    state.idle = now - state.lastInput > state.idleMs && now - lastArrival > 1000;
    showFps();
  }

  function showFps() {
    $("fps").textContent = state.idle ? "idle" : state.fps.toFixed(1);
    $("fps-unit").hidden = state.idle;
    $("hud").classList.toggle("idle", state.idle);
  }

  function updateHud(meta) {
    updateFps();
    $("frame-index").textContent = meta.index ?? "\u2013";
    $("gen-ms").textContent = meta.gen_ms != null ? meta.gen_ms.toFixed(0) : "\u2013";
    $("latency").textContent = meta.latency_ms != null ? meta.latency_ms.toFixed(0) : "\u2013";
    $("pending").textContent = meta.pending ?? 0;
    $("dropped").textContent = meta.dropped ?? 0;
    // gravity (genie play) may play a fall for the key pressed: show both, "Stay \u2192 Fall"
    const names = state.info ? state.info.action_names : [];
    const pressed = meta.pressed != null && meta.pressed !== meta.action ? names[meta.pressed] : null;
    $("last-action").textContent = meta.name == null ? "\u2013" : pressed ? `${pressed} \u2192 ${meta.name}` : meta.name;
    if (meta.action != null) highlight(meta.action);
    if (meta.reset && meta.prompt) { state.prompt = meta.prompt; markPrompt(); }
  }
  setInterval(updateFps, 250); // the rate falls, then says "idle", when nothing comes

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
        const label = p.kind === "grey" ? "neutral grey frame" : p.label;
        b.title = label;
        b.dataset.prompt = p.id;
        b.dataset.kind = p.kind;
        const img = document.createElement("img");
        img.src = p.thumbnail;
        img.alt = label;
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
    let label = "";
    for (const b of $("prompts").querySelectorAll("button")) {
      const on = b.dataset.prompt === state.prompt;
      b.classList.toggle("selected", on);
      b.setAttribute("aria-pressed", String(on));
      if (on) label = b.title;
    }
    $("prompt-label").textContent = label ? `started from: ${label}` : "";
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
