// The dashboard: a client of this server's /colab/ REST API, refreshed by polling.
// Every URL is relative to the page (…/colab/), so it works under any base_url, through the
// tunnel and through a relay. Plain polling, no long-lived connection: quick tunnels do not
// carry server-sent events, and an idle page can be snapshotted.
"use strict";

(function () {
  const POLL_MS = 2000;
  const params = new URLSearchParams(window.location.search);
  // Chart span in minutes: ?minutes=N (1 to 60), default 5.
  const MINUTES = Math.min(60, Math.max(1, parseInt(params.get("minutes"), 10) || 5));
  const WINDOW_MS = MINUTES * 60 * 1000;
  const LOG_LINES = 20;
  const history = new Map(); // GPU uuid (or index) -> [{t, util, mem}]
  const $ = (id) => document.getElementById(id);
  let timer = null;

  // The API calls are authenticated by Jupyter's login cookie, as Jupyter's own pages are: the
  // server answers a `?token=` load with a redirect to the address without it, once the cookie
  // is set, so no token is ever in this page or its address. Only GETs: no XSRF header needed.

  async function getJson(path) {
    const headers = { Accept: "application/json" };
    const r = await fetch(path, { headers, credentials: "same-origin", cache: "no-store" });
    if (!r.ok) {
      let message = r.statusText;
      try { message = (await r.json()).message || message; } catch (e) { /* not JSON */ }
      const err = new Error(path + ": " + r.status + " " + message);
      err.status = r.status;
      throw err;
    }
    return r.json();
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "n/a";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i >= 3 ? n.toFixed(1) : Math.round(n)) + " " + units[i];
  }

  function pct(n) { return n === null || n === undefined ? "n/a" : Math.round(n) + "%"; }

  function clock(iso) {
    const d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false });
  }

  function problem(text) {
    const box = $("problem");
    box.hidden = !text;
    box.textContent = text || "";
  }

  // ---- tunnel ------------------------------------------------------------------------------

  function renderTunnel(t) {
    const state = t.state || "unknown";
    $("tunnel-pill").dataset.state = state;
    $("tunnel-pill").textContent = "tunnel " + state;
    $("tunnel-state").textContent = state;
    $("tunnel-mode").textContent = t.mode ? "(" + t.mode + " tunnel)" : "";
    const link = $("tunnel-url");
    if (t.url) {
      link.textContent = t.url;
      link.href = t.url;
    } else {
      link.textContent = "none yet";
      link.removeAttribute("href");
    }
    $("tunnel-restarts").textContent = String(t.restarts ?? 0);
    const err = t.error;
    $("tunnel-error").hidden = !err;
    if (err) {
      $("tunnel-error-kind").textContent = err.kind + ":";
      $("tunnel-error-message").textContent = err.message || "";
      $("tunnel-error-hint").textContent = err.hint || "";
    }
    $("connect-command").textContent = t.connect ? t.connect.command : "Waiting for the tunnel URL…";
    const list = $("event-list");
    const events = (t.events || []).slice(-15).reverse();
    list.replaceChildren(...events.map((e) =>
      el("li", {}, el("time", { datetime: e.at }, clock(e.at)), el("strong", {}, e.state), " ", e.detail || "")));
    $("log-lines").textContent = (t.logs || []).join("\n") || "(no lines yet)";
  }

  // ---- GPUs --------------------------------------------------------------------------------

  function remember(key, util, mem, now) {
    const points = history.get(key) || [];
    points.push({ t: now, util, mem });
    while (points.length && now - points[0].t > WINDOW_MS) points.shift();
    history.set(key, points);
    return points;
  }

  function line(points, field, now) {
    const coords = [];
    for (const p of points) {
      if (p[field] === null || p[field] === undefined) continue;
      const x = 300 - ((now - p.t) / WINDOW_MS) * 300;
      const y = 60 - Math.max(0, Math.min(100, p[field])) * 0.56 - 2;
      coords.push(x.toFixed(1) + "," + y.toFixed(1));
    }
    return coords.join(" ");
  }

  function chart(points, label, now) {
    const box = svg("svg", { class: "chart", viewBox: "0 0 300 60", preserveAspectRatio: "none", role: "img", "aria-label": label });
    for (const y of [2, 30, 58]) box.append(svg("line", { class: "grid", x1: 0, x2: 300, y1: y, y2: y }));
    box.append(svg("polyline", { class: "mem", points: line(points, "mem", now) }));
    box.append(svg("polyline", { class: "util", points: line(points, "util", now) }));
    return box;
  }

  function renderGpus(g) {
    const list = $("gpu-list");
    const none = $("gpu-none");
    const devices = g.devices || [];
    const now = Date.now();
    $("gpu-summary").textContent = devices.length
      ? "· " + devices.length + " × " + (devices[0].name || "GPU") + (g.driver_version ? " · driver " + g.driver_version : "")
        + (g.cuda_driver_version ? " · CUDA " + g.cuda_driver_version : "")
      : "";
    none.hidden = devices.length > 0;
    if (!devices.length) {
      const e = g.error;
      none.textContent = e ? "No GPU: " + e.message + ". " + (e.hint || "") : "No GPU.";
    }
    list.replaceChildren(...devices.map((d) => {
      const mem = d.memory || {};
      const util = d.utilization ? d.utilization.gpu : null;
      const memPct = mem.total ? (100 * (mem.used || 0)) / mem.total : null;
      const points = remember(d.uuid || String(d.index), util, memPct, now);
      const name = d.name || "GPU " + d.index;
      const bar = el("span");
      bar.style.width = (memPct || 0).toFixed(1) + "%";
      const minutes = Math.round(WINDOW_MS / 60000);
      return el("article", { class: "gpu", "data-index": d.index, "aria-label": "GPU " + d.index + ": " + name },
        el("h3", {}, el("span", { class: "gpu-name" }, name), el("span", { class: "muted" }, "#" + d.index)),
        d.lost ? el("p", { class: "error" }, "GPU lost: it needs a reset.") : "",
        el("div", { class: "stats" },
          el("div", {}, el("div", { class: "big util-value gpu-util" }, pct(util)), el("div", { class: "muted" }, "utilization")),
          el("div", {}, el("div", { class: "big mem-value gpu-mem" }, bytes(mem.used)), el("div", { class: "muted" }, "of " + bytes(mem.total)))),
        el("div", { class: "bar", role: "meter", "aria-label": "GPU " + d.index + " memory used", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": (memPct || 0).toFixed(0) }, bar),
        el("div", { class: "stats muted" },
          el("span", {}, "temp " + (d.temperature_c ?? "n/a") + (d.temperature_c != null ? " °C" : "")),
          el("span", {}, "power " + (d.power_w != null ? d.power_w.toFixed(0) + " W" : "n/a") + (d.power_limit_w ? " / " + d.power_limit_w.toFixed(0) + " W" : "")),
          el("span", {}, "SM clock " + (d.clocks_mhz && d.clocks_mhz.sm != null ? d.clocks_mhz.sm + " MHz" : "n/a")),
          el("span", {}, "fan " + pct(d.fan_percent))),
        chart(points, "GPU " + d.index + " utilization " + pct(util) + " and memory " + pct(memPct) + " over the last " + (minutes === 1 ? "minute" : minutes + " minutes"), now));
    }));
    renderProcesses(devices);
    // For benchmarks and devtools: when the first GPU value was on screen.
    if (devices.length && !performance.getEntriesByName("colab:first-gpu").length) {
      performance.mark("colab:first-gpu");
    }
  }

  function renderProcesses(devices) {
    const rows = [];
    for (const d of devices) {
      for (const p of d.processes || []) {
        const owner = p.kernel_id
          ? [el("code", { title: p.kernel_id }, p.kernel_id.slice(0, 8)), p.notebook_path ? " " + p.notebook_path : ""]
          : [el("span", { class: "muted" }, "not a kernel of this server")];
        rows.push(el("tr", {},
          el("td", { class: "num" }, d.index), el("td", { class: "num" }, p.pid), el("td", {}, p.name || "?"),
          el("td", { class: "num" }, bytes(p.used_memory)), el("td", { class: "owner" }, ...owner)));
      }
    }
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No GPU processes.")));
    $("proc-rows").replaceChildren(...rows);
  }

  // ---- web ports ---------------------------------------------------------------------------

  function renderPorts(body) {
    const rows = (body.ports || []).map((p) => {
      const process = p.pid ? [p.name || "?", " ", el("span", { class: "muted" }, "(" + p.pid + ")")]
        : [el("span", { class: "muted" }, "not visible")];
      const kernel = p.kernel_id ? el("code", { title: p.kernel_id }, p.kernel_id.slice(0, 8)) : el("span", { class: "muted" }, "-");
      const id = "forward-" + p.port;
      const use = p.forwardable === false
        ? [el("span", { class: "muted refused" }, "refused: " + (p.refused || "not allowed"))]
        : [el("div", { class: "copyable" },
          el("code", { id, class: "forward" }, p.forward || "--forward " + p.port),
          el("button", { type: "button", class: "copy", "data-copy": id, "aria-label": "Copy the flag that forwards port " + p.port }, "Copy"))];
      return el("tr", { "data-port": p.port },
        el("td", { class: "num" }, p.port), el("td", {}, ...process), el("td", {}, kernel),
        el("td", { class: "cmdline", title: p.cmdline || "" }, p.cmdline || ""), el("td", { class: "use" }, ...use));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No listening ports.")));
    $("port-rows").replaceChildren(...rows);
  }

  // ---- runtime -----------------------------------------------------------------------------

  function renderStatus(s) {
    const rt = s.runtime || {};
    const res = s.resources || {};
    const srv = s.server || {};
    $("host").textContent = srv.hostname ? "on " + srv.hostname : "";
    const hours = srv.uptime_s != null ? (srv.uptime_s / 3600).toFixed(1) + " h" : "n/a";
    const facts = [
      ["Runtime", (rt.colab ? "Colab" + (rt.colab_release ? " " + rt.colab_release : "") : "not Colab") + ", accelerator " + (rt.accelerator || "none") + (rt.tpu_type ? " (" + rt.tpu_type + ")" : "")],
      ["Python", (rt.python || "?") + " on " + (rt.platform || "?")],
      ["Server", "Jupyter Server " + (srv.version || "?") + ", up " + hours + ", " + (srv.kernels ?? "?") + " kernel(s)"],
      ["CPU", (res.cpu_count ?? "?") + " cores, load " + (res.load_1m != null ? res.load_1m.toFixed(2) : "n/a")],
      ["Memory", res.memory ? bytes(res.memory.used) + " used of " + bytes(res.memory.total) : "n/a"],
      ["Disk", res.disk ? bytes(res.disk.used) + " used of " + bytes(res.disk.total) + " (" + res.disk.path + ")" : "n/a"],
      ["Extension", "jupyter-colab-tunnel " + (s.version || "?")],
    ];
    $("runtime-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    if (s.life) renderLife(s.life);
  }

  // ---- the runtime's life -------------------------------------------------------------------

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "n/a";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    if (h) return h + " h " + String(m).padStart(2, "0") + " min";
    if (m) return m + " min " + String(s % 60).padStart(2, "0") + " s";
    return s + " s";
  }

  const END_REASONS = { max_lifetime: "the maximum lifetime", idle: "the idle timeout" };

  function renderLife(life) {
    const facts = [];
    facts.push(["Machine up", duration(life.uptime_seconds) + (life.machine_started_at ? " (since " + clock(life.machine_started_at) + ")" : ""), "life-uptime"]);
    const busy = life.busy_kernels ? ", " + life.busy_kernels + " kernel(s) busy" : "";
    facts.push(["Idle", duration(life.idle_seconds) + busy, "life-idle"]);
    let end = "not known (no platform limits)";
    if (life.estimated_end_at) {
      const left = (new Date(life.estimated_end_at) - Date.now()) / 1000;
      end = "estimate: " + clock(life.estimated_end_at) + " (in about " + duration(left) + "), by " + (END_REASONS[life.estimated_end_reason] || "a limit");
    }
    facts.push(["Estimated end", end, "life-end"]);
    const limits = life.limits;
    if (limits) {
      facts.push(["Limits", (life.platform || "configured") + ": " + (limits.max_lifetime_seconds ? duration(limits.max_lifetime_seconds) + " at most" : "lifetime not known") + ", " + (limits.idle_timeout_seconds ? duration(limits.idle_timeout_seconds) + " idle" : "idle time not known"), "life-limits"]);
    }
    const rows = facts.flatMap(([k, v, id]) => [el("dt", {}, k), el("dd", { id }, v)]);
    if (limits && limits.source) {
      // Only a web page becomes a link; a setting's name stays text.
      const first = limits.source.split("; ").find((s) => s.startsWith("https://"));
      const source = first
        ? el("a", { href: first, rel: "noopener noreferrer", target: "_blank" }, limits.source)
        : limits.source;
      rows.push(el("dt", {}, "Source"), el("dd", { id: "life-source", title: limits.note || "" }, source));
    }
    $("life-facts").replaceChildren(...rows);
  }

  // ---- copy buttons ------------------------------------------------------------------------

  async function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const area = el("textarea", { readonly: "", "aria-hidden": "true" }, text);
    area.className = "sr-only";
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button.copy");
    if (!button) return;
    const source = $(button.dataset.copy);
    const text = source.tagName === "A" ? source.getAttribute("href") || "" : source.textContent;
    try {
      await copy(text);
      button.dataset.done = "";
      button.textContent = "Copied";
      $("announce").textContent = "Copied to the clipboard";
    } catch (e) {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { delete button.dataset.done; button.textContent = "Copy"; }, 1500);
  });

  for (const node of document.querySelectorAll(".window-min")) node.textContent = MINUTES + (MINUTES === 1 ? " minute" : " minutes");

  // ---- polling -----------------------------------------------------------------------------

  async function refresh() {
    const results = await Promise.allSettled([
      getJson("tunnel?logs=" + LOG_LINES),
      getJson("gpu"),
      getJson("status"),
      getJson("ports"),
    ]);
    const [tunnel, gpu, status, ports] = results;
    if (tunnel.status === "fulfilled") renderTunnel(tunnel.value);
    if (gpu.status === "fulfilled") renderGpus(gpu.value);
    if (status.status === "fulfilled") renderStatus(status.value);
    if (ports.status === "fulfilled") renderPorts(ports.value);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) {
      const denied = failed.reason && failed.reason.status === 403;
      problem(denied
        ? "The server refused the request (403): your login expired. Reload this page with ?token=<your token>."
        : "Cannot reach the server (" + failed.reason.message + "). Retrying every " + POLL_MS / 1000 + " s.");
    } else {
      problem("");
      $("updated").textContent = "updated " + new Date().toLocaleTimeString([], { hour12: false });
    }
    document.body.dataset.loaded = "true";
  }

  async function loop() {
    try { await refresh(); } finally {
      timer = document.hidden ? null : setTimeout(loop, POLL_MS);
    }
  }

  // No polling while the tab is hidden; one refresh as soon as it shows again.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === null) loop();
  });

  loop();
})();
