// The thaw console: a single page over thaw's JSON APIs. The key lives in this tab's
// sessionStorage only and goes out as `Authorization: Bearer` to this origin; nothing is
// fetched from anywhere else. Text from the server is always set as textContent, never as HTML.
"use strict";
(function () {
  const KEY = "thaw.key";
  const $ = (sel) => document.querySelector(sel);
  let me = null; // GET /v1/whoami
  let page = null; // the page shown: {stop()}

  // ---- helpers ----
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k.startsWith("data-")) el.setAttribute(k, v);
      else if (k in el) el[k] = v;
      else el.setAttribute(k, v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
  }
  const num = (v, d = 0) => (v === null || v === undefined ? "—" : Number(v).toFixed(d));
  const ms = (v) => (v === null || v === undefined ? "—" : Number(v).toFixed(v < 10 ? 2 : 1) + " ms");
  const pct = (v) => (v === null || v === undefined ? "—" : Number(v).toFixed(1) + "%");
  const usd = (c) => (c ? c.usd : "—"); // FormatDollars: "$0.000018"
  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  const enc = encodeURIComponent;

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // Calls thaw's API with the tab's key. A 401 signs out (the key was revoked meanwhile).
  async function api(path, opts = {}) {
    const headers = Object.assign({ Authorization: "Bearer " + sessionStorage.getItem(KEY) },
                                  opts.headers || {});
    let body = opts.body;
    if (body !== undefined && typeof body !== "string") {
      body = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const res = await fetch(path, { method: opts.method || "GET", headers, body });
    if (opts.raw) return res;
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (!res.ok) {
      const msg = (data && (data.errorMessage || data.message)) || text || res.statusText;
      if (res.status === 401 && !opts.signin) signOut("Your key is no longer accepted: " + msg);
      throw new ApiError(res.status, res.status + ": " + msg);
    }
    return data;
  }

  function flash(msg) {
    const f = $("#flash");
    f.textContent = msg || "";
    f.hidden = !msg;
  }

  // ---- sign-in ----
  function showSignIn(message) {
    $("#top").hidden = true;
    $("#view").hidden = true;
    $("#signin").hidden = false;
    $("#signin-error").textContent = message || "";
    $("#api-key").focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    me = null;
    if (page) page.stop();
    page = null;
    showSignIn(message);
  }

  async function signIn(key) {
    const res = await fetch("/v1/whoami", { headers: { Authorization: "Bearer " + key } });
    if (res.status === 401) {
      throw new Error("That key was not accepted (401): it is unknown or revoked. Check it and " +
                      "try again.");
    }
    if (!res.ok) throw new Error("The server answered " + res.status + " " + res.statusText);
    return res.json();
  }

  $("#signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = $("#api-key").value.trim();
    if (!key) {
      $("#signin-error").textContent = "Enter an API key.";
      return;
    }
    $("#signin-error").textContent = "";
    try {
      me = await signIn(key);
    } catch (e) {
      $("#signin-error").textContent =
          e instanceof TypeError ? "Could not reach the thaw server: " + e.message : e.message;
      return;
    }
    sessionStorage.setItem(KEY, key);
    $("#api-key").value = "";
    start();
  });
  $("#sign-out").addEventListener("click", () => signOut(""));

  function start() {
    $("#signin").hidden = true;
    $("#top").hidden = false;
    $("#view").hidden = false;
    $("#who").textContent = "tenant " + me.tenant + " · " + me.role;
    $("#nav-admin").hidden = me.role !== "admin";
    route();
  }

  // ---- routing ----
  function route() {
    if (!me) return;
    if (page) page.stop();
    flash("");
    const view = $("#view");
    view.replaceChildren();
    const hash = location.hash || "#/";
    let nav = "functions";
    if (hash.startsWith("#/fn/")) {
      page = functionPage(view, decodeURIComponent(hash.slice(5)));
    } else if (hash === "#/usage") {
      nav = "usage";
      page = usagePage(view);
    } else if (hash === "#/admin" && me.role === "admin") {
      nav = "admin";
      page = adminPage(view);
    } else {
      page = functionsPage(view);
    }
    document.querySelectorAll("[data-nav]").forEach((a) => {
      a.classList.toggle("active", a.dataset.nav === nav);
    });
  }
  window.addEventListener("hashchange", route);

  // Runs `fn` now and every `ms` until stopped; errors show in the flash line.
  function every(msec, fn) {
    let timer = null, stopped = false;
    const tick = async () => {
      try {
        await fn();
      } catch (e) {
        if (!stopped) flash(e.message);
      }
      if (!stopped) timer = setTimeout(tick, msec);
    };
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  // ---- functions ----
  const COLUMNS = [
    ["name", "Function"], ["runtime", "Runtime"], ["version", "Version", 1],
    ["instances", "Instances"], ["calls", "Calls 1h", 1], ["errors", "Errors 1h", 1],
    ["p50", "p50", 1], ["p99", "p99", 1], ["cold", "Cold starts", 1], ["last", "Last called", 1],
  ];

  function functionsPage(view) {
    const state = { sort: "name", desc: false, filter: "", rows: [] };
    const filter = h("input", { id: "filter", type: "search", placeholder: "Filter by name or runtime" });
    const updated = h("span", { class: "muted", id: "updated" });
    const tbody = h("tbody");
    const headRow = h("tr", {}, COLUMNS.map(([key, label, n]) =>
      h("th", { class: "sortable" + (n ? " num" : ""), "data-key": key,
                onclick: () => {
                  state.desc = state.sort === key ? !state.desc : false;
                  state.sort = key;
                  render();
                } }, label)));
    view.append(h("div", { class: "toolbar" }, h("h1", {}, "Functions"), filter, updated),
                h("table", { id: "functions" }, h("thead", {}, headRow), tbody),
                h("p", { class: "muted" }, "Calls, errors, percentiles and cold starts over the " +
                  "last hour; instances now (ready / busy / starting). Updates every 5 s."));
    filter.addEventListener("input", () => {
      state.filter = filter.value.trim().toLowerCase();
      render();
    });

    const sortValue = (r, key) => {
      switch (key) {
        case "instances": return r.inst.ready + r.inst.starting;
        case "last": return r.totals.last_called ? Date.parse(r.totals.last_called) : 0;
        case "calls": return r.totals.calls;
        case "errors": return r.totals.errors;
        case "p50": return r.totals.p50_ms ?? -1;
        case "p99": return r.totals.p99_ms ?? -1;
        case "cold": return r.totals.cold_start_percent;
        default: return r[key];
      }
    };

    function render() {
      headRow.querySelectorAll("th").forEach((th) => {
        th.classList.toggle("sorted-asc", th.dataset.key === state.sort && !state.desc);
        th.classList.toggle("sorted-desc", th.dataset.key === state.sort && state.desc);
      });
      const rows = state.rows.filter((r) => !state.filter ||
          r.name.toLowerCase().includes(state.filter) || r.runtime.includes(state.filter));
      rows.sort((a, b) => {
        const x = sortValue(a, state.sort), y = sortValue(b, state.sort);
        const c = typeof x === "string" ? x.localeCompare(y) : x - y;
        return state.desc ? -c : c;
      });
      tbody.replaceChildren(...rows.map((r) => {
        const t = r.totals;
        return h("tr", { "data-function": r.name, onclick: () => { location.hash = "#/fn/" + enc(r.name); } },
          h("td", {}, h("a", { href: "#/fn/" + enc(r.name) }, r.name),
            r.state === "failing" ? h("span", { class: "pill failing" }, "failing") : null),
          h("td", {}, r.runtime), h("td", { class: "num" }, r.version),
          h("td", {}, h("span", { class: "pill ready", title: "ready" }, r.inst.ready),
            h("span", { class: "pill busy", title: "busy" }, r.inst.busy),
            h("span", { class: "pill starting", title: "starting" }, r.inst.starting)),
          h("td", { class: "num" }, t.calls), h("td", { class: "num" }, t.errors),
          h("td", { class: "num" }, ms(t.p50_ms)), h("td", { class: "num" }, ms(t.p99_ms)),
          h("td", { class: "num", title: "cold (exec) starts; the rest were warm" }, pct(t.cold_start_percent)),
          h("td", { class: "num", title: t.last_called || "" }, ago(t.last_called)));
      }));
      if (rows.length === 0) {
        tbody.append(h("tr", {}, h("td", { colSpan: COLUMNS.length, class: "muted" },
          state.rows.length ? "No function matches the filter." : "No functions deployed yet.")));
      }
    }

    const stop = every(5000, async () => {
      const list = await api("/v1/functions");
      const rows = await Promise.all(list.functions.map(async (f) => {
        let totals = { calls: 0, errors: 0, p50_ms: null, p99_ms: null, cold_start_percent: 0, last_called: null };
        try {
          totals = (await api("/v1/functions/" + enc(f.name) + "/stats?window=1h&step=3600")).totals;
        } catch (e) { /* deleted meanwhile, or metering off: show the config anyway */ }
        return { name: f.name, runtime: f.runtime, version: f.version, state: f.state,
                 inst: f.instances, totals };
      }));
      state.rows = rows;
      render();
      updated.textContent = "updated " + new Date().toLocaleTimeString();
    });
    return { stop };
  }

  // ---- one function ----
  function functionPage(view, name) {
    const stops = [];
    const base = "/v1/functions/" + enc(name);
    const title = h("h1", {}, name);
    const config = h("dl", { class: "kv", id: "config" });
    const versions = h("tbody");
    const aliases = h("tbody");
    view.append(h("p", {}, h("a", { href: "#/" }, "← Functions")), title,
      h("div", { class: "two" },
        h("div", { class: "card" }, h("h2", {}, "Configuration"), config),
        h("div", { class: "card" }, h("h2", {}, "Versions"),
          h("table", { id: "versions" }, h("thead", {}, h("tr", {}, h("th", {}, "Version"),
            h("th", {}, "Created"), h("th", {}, "sha256"))), versions),
          h("h2", {}, "Aliases"),
          h("table", { id: "aliases" }, h("thead", {}, h("tr", {}, h("th", {}, "Alias"),
            h("th", {}, "Version"), h("th", {}, "Weights"))), aliases))));

    // Charts
    let windowSel = "1h";
    const seg = h("span", { class: "seg" });
    const charts = {};
    const chartDefs = [
      ["calls", "Calls and errors per minute"], ["duration", "Duration p50 / p99 (ms)"],
      ["cold", "Cold starts per minute, by kind"], ["instances", "Instances (most in each minute)"],
      ["concurrency", "Concurrency"],
    ];
    // Starts over the window by kind (warm, fork, full, and any other the server reports).
    const startKinds = h("tbody");
    const grid = h("div", { class: "grid" }, chartDefs.map(([id, label]) => {
      charts[id] = { canvas: h("canvas", { id: "chart-" + id }), legend: h("div", { class: "legend" }) };
      return h("div", { class: "card chart" }, h("h3", {}, label), charts[id].canvas, charts[id].legend,
        id === "cold" ? h("table", { id: "start-kinds" }, h("thead", {}, h("tr", {},
          h("th", {}, "Start kind"), h("th", { class: "num" }, "Calls"), h("th", { class: "num" }, "Share"))),
          startKinds) : null);
    }));
    for (const w of ["1h", "1d"]) {
      seg.append(h("button", { type: "button", class: "secondary" + (w === windowSel ? " on" : ""),
        "data-window": w, onclick: (ev) => {
          windowSel = w;
          seg.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b === ev.target));
          loadStats();
        } }, "last " + (w === "1h" ? "hour" : "day")));
    }
    view.append(h("div", { class: "toolbar" }, h("h2", {}, "Traffic"), seg), grid);

    // Invoke and logs
    const payload = h("textarea", { id: "payload", rows: 5, value: "{}" });
    const qualifier = h("input", { id: "qualifier", placeholder: "version or alias (optional)" });
    // Kept as elements, not looked up: an invoke may finish after the page was left.
    const fig = {};
    for (const k of ["status", "duration", "billed", "start"]) fig[k] = h("b", { id: "invoke-" + k }, "—");
    const figures = h("div", { class: "figures", id: "invoke-figures" },
      ["status", "duration", "billed", "start"].map((k) => h("span", {}, k + " ", fig[k])));
    const result = h("pre", { id: "invoke-result" });
    const invokeError = h("p", { class: "error", id: "invoke-error" });
    const form = h("form", { id: "invoke-form" },
      h("label", { htmlFor: "payload" }, "Event (JSON)"), payload,
      h("label", { htmlFor: "qualifier" }, "Qualifier"), qualifier,
      h("button", { type: "submit", id: "invoke" }, "Invoke"), invokeError);
    const tail = h("pre", { id: "log-tail" });
    view.append(h("div", { class: "two" },
      h("div", { class: "card" }, h("h2", {}, "Invoke"), form, h("h2", {}, "Result"), figures, result),
      h("div", { class: "card" }, h("h2", {}, "Logs (live)"), tail)));

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      invokeError.textContent = "";
      try {
        JSON.parse(payload.value);
      } catch (e) {
        invokeError.textContent = "The event is not valid JSON: " + e.message;
        return;
      }
      for (const el of Object.values(fig)) el.textContent = "…";
      result.textContent = "";
      const q = qualifier.value.trim();
      const t0 = performance.now();
      let res;
      try {
        res = await api(base + "/invoke" + (q ? "?qualifier=" + enc(q) : ""),
                        { method: "POST", body: payload.value, raw: true,
                          headers: { "Content-Type": "application/json" } });
      } catch (e) {
        invokeError.textContent = "The invoke did not reach thaw: " + e.message;
        return;
      }
      fig.status.textContent = res.status + " " + (res.statusText || "");
      const cold = res.headers.get("X-Thaw-Cold-Start");
      const init = res.headers.get("X-Thaw-Init-Ms");
      const kind = res.headers.get("X-Thaw-Start-Kind");
      fig.start.textContent = cold === "true" ? "cold" + (kind ? ", " + kind : "") + " (init " + init + " ms)" :
                                       cold === "false" ? "warm" : "—";
      // Streamed answers arrive chunk by chunk: show each as it comes.
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        result.textContent += dec.decode(value, { stream: true });
      }
      result.textContent += dec.decode();
      try {
        result.textContent = JSON.stringify(JSON.parse(result.textContent), null, 2);
      } catch (e) { /* not JSON (a stream of text): shown as it came */ }
      fig.duration.textContent = (performance.now() - t0).toFixed(1) + " ms (round trip)";
      const billed = res.headers.get("X-Thaw-Billed-Ms");
      fig.billed.textContent = billed !== null ? billed + " ms" : "in the trailer (streamed)";
    });

    let since = 0;
    stops.push(every(1000, async () => {
      for (;;) {
        const r = await api(base + "/logs?since=" + since + "&limit=500");
        for (const l of r.lines) {
          tail.append(h("div", { "data-seq": l.seq },
            l.time.slice(11, 19) + " " + (l.requestId ? l.requestId.slice(0, 8) + " " : "") + l.message));
        }
        since = r.next;
        while (tail.childElementCount > 1000) tail.firstElementChild.remove();
        if (r.lines.length) tail.scrollTop = tail.scrollHeight;
        if (r.lines.length < 500) break;
      }
    }));

    async function loadInfo() {
      const f = await api(base);
      title.replaceChildren(f.name, " ", h("span", { class: "pill " + (f.state === "failing" ? "failing" : "ready") }, f.state));
      const rows = [
        ["runtime", f.runtime], ["handler", f.handler || "—"], ["version ($LATEST)", f.version],
        ["memory", f.memory_mb + " MB"], ["timeout", f.timeout_s + " s"],
        ["concurrency", f.concurrency], ["instances", (f.min_instances || 0) + "–" + f.max_instances],
        ["idle timeout", f.idle_timeout_s + " s"], ["url_auth", f.url_auth], ["network", f.network],
        ["gpu", f.gpu ? JSON.stringify(f.gpu) : "0"],
        ["environment", Object.keys(f.environment || {}).join(", ") || "—"],
        ["code", f.code_size + " bytes, sha256 " + String(f.sha256).slice(0, 12)],
        ["now", f.instances.ready + " ready, " + f.instances.busy + " busy, " +
                f.instances.starting + " starting; " + f.inflight + " in flight, " + f.queued + " queued"],
        ["updated", f.updated], ["invoke", f.invoke_path],
      ];
      if (f.last_init_error) rows.push(["last init error", f.last_init_error]);
      config.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v === undefined ? "—" : v)]));
      versions.replaceChildren(...f.versions.slice().reverse().map((v) =>
        h("tr", {}, h("td", {}, v.version), h("td", {}, v.created), h("td", {}, v.sha256.slice(0, 12)))));
      try {
        const a = await api("/2015-03-31/functions/" + enc(name) + "/aliases");
        aliases.replaceChildren(...a.Aliases.map((al) => {
          const w = (al.RoutingConfig && al.RoutingConfig.AdditionalVersionWeights) || {};
          const extra = Object.entries(w).map(([v, x]) => "v" + v + ": " + Math.round(x * 100) + "%");
          return h("tr", {}, h("td", {}, al.Name), h("td", {}, al.FunctionVersion),
                   h("td", {}, extra.length ? extra.join(", ") : "100%"));
        }));
        if (!a.Aliases.length) aliases.append(h("tr", {}, h("td", { colSpan: 3, class: "muted" }, "none")));
      } catch (e) {
        aliases.replaceChildren(h("tr", {}, h("td", { colSpan: 3, class: "muted" }, e.message)));
      }
    }

    async function loadStats() {
      const s = await api(base + "/stats?window=" + windowSel + "&step=60");
      const draw = (id, series, unit) => {
        ThawChart.draw(charts[id].canvas, { t: s.t, series, unit });
        charts[id].legend.replaceChildren(...series.map((x) =>
          h("span", {}, h("i", { class: "sw", "data-color": x.color }), x.label)));
        charts[id].legend.querySelectorAll("i").forEach((i) => { i.style.background = i.dataset.color; });
      };
      draw("calls", [{ label: "calls", color: "#2563eb", values: s.calls, bars: true },
                     { label: "errors", color: "#dc2626", values: s.errors, bars: true }]);
      draw("duration", [{ label: "p50", color: "#059669", values: s.p50_ms },
                        { label: "p99", color: "#d97706", values: s.p99_ms }], "ms");
      // One bar series per kind of cold start the server reports (warm calls are not cold starts).
      const kindColors = { fork: "#059669", full: "#7c3aed" };
      const spare = ["#d97706", "#2563eb", "#db2777", "#64748b"];
      const starts = s.starts || {};
      const coldKinds = Object.keys(starts).filter((k) => k !== "warm");
      draw("cold", coldKinds.map((k, i) => ({ label: k, color: kindColors[k] || spare[i % spare.length],
                                              values: starts[k], bars: true })));
      const byKind = (s.totals && s.totals.starts_by_kind) || {};
      const all = Object.values(byKind).reduce((a, b) => a + b, 0);
      startKinds.replaceChildren(...Object.keys(byKind).map((k) => h("tr", { "data-kind": k },
        h("td", {}, k), h("td", { class: "num" }, byKind[k]),
        h("td", { class: "num" }, all > 0 ? pct(100 * byKind[k] / all) : "—"))));
      draw("instances", [{ label: "ready", color: "#059669", values: s.instances.ready },
                         { label: "busy", color: "#d97706", values: s.instances.busy },
                         { label: "starting", color: "#2563eb", values: s.instances.starting }]);
      draw("concurrency", [{ label: "average (ledger)", color: "#2563eb", values: s.concurrency_avg },
                           { label: "most in flight", color: "#dc2626", values: s.inflight_max }]);
    }

    stops.push(every(5000, async () => {
      await loadInfo();
      await loadStats();
    }));
    return { stop: () => stops.forEach((s) => s()) };
  }

  // ---- usage and costs ----
  function usagePage(view) {
    const day = (d) => d.toISOString().slice(0, 10);
    const from = h("input", { id: "usage-from", type: "date", value: day(new Date(Date.now() - 29 * 86400e3)) });
    const to = h("input", { id: "usage-to", type: "date", value: day(new Date(Date.now() + 86400e3)) });
    const group = h("select", { id: "usage-group" },
      ["function", "tenant", "day"].map((g) => h("option", { value: g }, "per " + g)));
    const csv = h("button", { type: "button", class: "secondary", id: "usage-csv" }, "Download CSV");
    const table = h("table", { id: "usage" });
    const advice = h("table", { id: "advice" });
    let rows = [];
    const cols = [
      ["invocations", "Calls"], ["errors", "Errors"], ["p50_duration_ms", "p50 ms"],
      ["p99_duration_ms", "p99 ms"], ["cold_start_percent", "Cold %"], ["gb_seconds", "GB-s"],
      ["cpu_seconds", "CPU-s"], ["gpu_seconds", "GPU-s"],
    ];
    view.append(h("h1", {}, "Usage and costs"),
      h("div", { class: "toolbar" }, "from", from, "to", to, group,
        h("button", { type: "button", onclick: () => load() }, "Show"), csv),
      h("div", { class: "card" }, table),
      h("p", { class: "muted" }, "Lambda sheet: requests and billed GB-s at Lambda's prices. Actual " +
        "use: requests, CPU-seconds and peak memory actually used. Prices: the server's config."),
      h("h2", {}, "Advisor (last 7 days)"), h("div", { class: "card" }, advice));

    async function load() {
      const g = group.value;
      const u = await api("/v1/usage?group_by=" + g + "&from=" + from.value + "&to=" + to.value);
      rows = (u.functions || u.tenants || u.days).map((r) => Object.assign({ key: r[g] }, r));
      const head = h("tr", {}, h("th", {}, g), cols.map(([, l]) => h("th", { class: "num" }, l)),
                     h("th", { class: "num" }, "Lambda sheet"), h("th", { class: "num" }, "Actual use"));
      const line = (r, label) => h("tr", label ? { class: "total" } : { "data-row": r.key },
        h("td", {}, label || r.key), cols.map(([k]) => h("td", { class: "num" },
          typeof r[k] === "number" && !Number.isInteger(r[k]) ? r[k].toFixed(3) : r[k])),
        h("td", { class: "num" }, usd(r.cost_lambda)), h("td", { class: "num" }, usd(r.cost_actual)));
      table.replaceChildren(h("thead", {}, head),
        h("tbody", {}, rows.map((r) => line(r)), line(u.total, "total")));
      if (!rows.length) table.append(h("caption", { class: "muted" }, "No invocations in this range."));
      const a = await api("/v1/advice?days=7");
      advice.replaceChildren(h("thead", {}, h("tr", {}, h("th", {}, "Function"), h("th", {}, "Recommendation"),
          h("th", {}, "Why"), h("th", { class: "num" }, "Serverless"), h("th", { class: "num" }, "Always-on"))),
        h("tbody", {}, a.functions.map((f) => h("tr", { "data-advice": f.function },
          h("td", {}, f.function), h("td", {}, f.advice), h("td", { class: "why" }, f.reason),
          h("td", { class: "num" }, usd(f.serverless_cost)), h("td", { class: "num" }, usd(f.always_on_cost))))));
    }

    csv.addEventListener("click", () => {
      const g = group.value;
      const header = [g, ...cols.map(([k]) => k), "cost_lambda_usd", "cost_actual_usd"];
      const quote = (v) => (/[",\n]/.test(String(v)) ? '"' + String(v).replace(/"/g, '""') + '"' : String(v));
      const lines = [header.join(",")].concat(rows.map((r) =>
        [r.key, ...cols.map(([k]) => r[k]), r.cost_lambda.usd.replace("$", ""), r.cost_actual.usd.replace("$", "")].map(quote).join(",")));
      const url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
      const a = h("a", { href: url, download: "thaw-usage-" + g + "-" + from.value + "-" + to.value + ".csv" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    });
    group.addEventListener("change", () => load().catch((e) => flash(e.message)));
    load().catch((e) => flash(e.message));
    return { stop() {} };
  }

  // ---- admin ----
  function adminPage(view) {
    const node = h("dl", { class: "kv", id: "node" });
    const tenants = h("table", { id: "tenants" });
    const keys = h("table", { id: "keys" });
    const secret = h("div", { id: "new-secret" });
    const msg = h("p", { class: "error", id: "admin-error" });
    const tenantName = h("input", { id: "new-tenant", placeholder: "name" });
    const keyTenant = h("select", { id: "key-tenant" });
    const keyRole = h("select", { id: "key-role" }, h("option", { value: "tenant" }, "tenant"),
                      h("option", { value: "admin" }, "admin"));
    const keyDesc = h("input", { id: "key-description", placeholder: "description" });
    view.append(h("h1", {}, "Admin"), msg,
      h("div", { class: "card" }, h("h2", {}, "Node"), node),
      h("div", { class: "card" }, h("h2", {}, "Tenants"), tenants,
        h("form", { class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); act(() =>
          api("/v1/tenants", { method: "POST", body: { name: tenantName.value.trim() } })); } },
          tenantName, h("button", { type: "submit" }, "Create tenant"))),
      h("div", { class: "card" }, h("h2", {}, "Keys"), keys,
        h("form", { class: "toolbar", id: "key-form", onsubmit: (ev) => { ev.preventDefault(); act(async () => {
          const k = await api("/v1/keys", { method: "POST",
            body: { tenant: keyTenant.value, role: keyRole.value, description: keyDesc.value } });
          keyDesc.value = "";
          secret.replaceChildren(h("p", {}, "Key " + k.id + " for tenant " + k.tenant +
            ": copy the secret now, it is shown only once."), h("div", { class: "secret" }, k.secret));
        }); } }, keyTenant, keyRole, keyDesc, h("button", { type: "submit" }, "Create key")),
        secret));

    async function act(fn) {
      msg.textContent = "";
      try {
        await fn();
      } catch (e) {
        msg.textContent = e.message;
      }
      await load().catch((e) => { msg.textContent = e.message; });
    }

    const dollars = (micros) => (micros === null || micros === undefined ? "" : String(micros / 1e6));
    function editRow(t) {
      const c = h("input", { value: t.concurrency ?? "", size: 5, placeholder: "none" });
      const r = h("input", { value: t.rate_per_second ?? "", size: 5, placeholder: "none" });
      const b = h("input", { value: dollars(t.monthly_budget_micros), size: 7, placeholder: "none" });
      const val = (el) => (el.value.trim() === "" ? null : Number(el.value));
      return h("tr", { class: "edit" }, h("td", {}, t.name), h("td", {}, c), h("td", {}, r), h("td", {}, b),
        h("td", { colSpan: 2 }, h("button", { type: "button", onclick: () => act(() =>
          api("/v1/tenants/" + enc(t.name), { method: "PATCH", body: {
            concurrency: val(c), rate_per_second: val(r),
            monthly_budget_micros: val(b) === null ? null : Math.round(val(b) * 1e6) } })) }, "Save"),
          " ", h("button", { type: "button", class: "secondary", onclick: () => load() }, "Cancel")));
    }

    async function load() {
      const n = await api("/v1/node");
      const rows = [["isolation", n.isolation], ["listen", n.listen]];
      if (n.instances) {
        rows.push(["instances", n.instances.ready + " ready (" + n.instances.busy + " busy), " +
                   n.instances.starting + " starting, " + n.instances.stopping + " stopping"],
                  ["calls", n.inflight + " in flight, " + n.queued + " waiting for an instance"],
                  ["memory", n.memory_mb.reserved + " MB of " + n.memory_mb.budget + " MB budget in use"],
                  ["event queue", n.events_queued + " events"]);
      }
      rows.push(["GPUs", (n.gpus.devices || []).length + " (" + n.gpus.source + ")"]);
      node.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));

      const t = await api("/v1/tenants");
      keyTenant.replaceChildren(...t.tenants.map((x) => h("option", { value: x.name }, x.name)));
      tenants.replaceChildren(h("thead", {}, h("tr", {}, ["Tenant", "Concurrency", "Rate /s",
        "Budget / month", "Spent this month", ""].map((x) => h("th", {}, x)))),
        h("tbody", {}, t.tenants.map((x) => {
          const budget = x.monthly_budget_micros;
          const share = budget ? x.month_to_date_micros / budget : 0;
          const fill = h("i", { class: share >= 1 ? "over" : share >= 0.8 ? "warn" : "" });
          fill.style.width = Math.min(100, share * 100) + "%";
          const row = h("tr", { "data-tenant": x.name }, h("td", {}, x.name),
            h("td", {}, x.concurrency ?? "none"), h("td", {}, x.rate_per_second ?? "none"),
            h("td", {}, budget ? "$" + (budget / 1e6).toFixed(2) : "none"),
            h("td", {}, x.month_to_date_usd + " ", budget ? h("span", { class: "bar" }, fill) : null),
            h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => row.replaceWith(editRow(x)) }, "Edit limits")));
          return row;
        })));

      const k = await api("/v1/keys");
      keys.replaceChildren(h("thead", {}, h("tr", {}, ["Key id", "Tenant", "Role", "Description",
        "Created", ""].map((x) => h("th", {}, x)))),
        h("tbody", {}, k.keys.map((x) => {
          const revoke = h("button", { type: "button", class: "danger", onclick: () => {
            if (revoke.dataset.armed) {
              act(() => api("/v1/keys/" + enc(x.id), { method: "DELETE" }));
            } else {
              revoke.dataset.armed = "1";
              revoke.textContent = "Confirm revoke";
            }
          } }, "Revoke");
          return h("tr", { "data-key": x.id }, h("td", {}, x.id), h("td", {}, x.tenant), h("td", {}, x.role),
            h("td", {}, x.description), h("td", {}, x.created), h("td", {}, x.id === me.key_id ? "this key" : revoke));
        })));
    }
    load().catch((e) => { msg.textContent = e.message; });
    return { stop() {} };
  }

  // ---- start ----
  const saved = sessionStorage.getItem(KEY);
  if (saved) {
    signIn(saved).then((w) => { me = w; start(); }).catch(() => signOut(""));
  } else {
    showSignIn("");
  }
})();
