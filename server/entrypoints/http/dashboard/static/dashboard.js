// Triveni merchant dashboard: fetches the JSON endpoints and renders them with DOM nodes.
// Data only ever reaches the page through textContent / attributes (never innerHTML), and the
// page loads nothing but this file and dashboard.css (CSP: script-src 'self').
"use strict";

(() => {
  const body = document.body;
  const page = body.dataset.page;
  const refreshMs = (Number(body.dataset.refreshSeconds) || 5) * 1000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  // ---- small helpers ---------------------------------------------------------------------
  function append(node, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
    }
    return append(node, children);
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return append(node, children);
  }

  const $ = (id) => document.getElementById(id);
  const pct = (rate) => (rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(1)}%`);
  const ms = (value) => `${Number(value).toLocaleString("en-IN", { maximumFractionDigits: 1 })}\u00a0ms`;

  // 7 → 10, 23 → 50, 140 → 200: an axis top whose half-way line is a round number too.
  function niceMax(value) {
    const power = 10 ** Math.floor(Math.log10(Math.max(1, value)));
    for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }
  const count = (value) => Number(value).toLocaleString("en-IN");

  function when(iso) {
    if (!iso) return "–";
    return new Date(iso).toLocaleString("en-IN", {
      day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit",
      hour12: false,
    });
  }

  function badge(status) {
    const text = String(status || "–");
    return el("span", { class: `badge s-${text.toLowerCase().replace(/[^a-z_]/g, "")}` }, text);
  }

  function rateBar(rate) {
    const width = rate === null || rate === undefined ? 0 : Math.round(rate * 60);
    const tone = rate === null || rate === undefined ? "none" : rate >= 0.9 ? "ok" : rate >= 0.7 ? "warn" : "bad";
    return el("span", { class: "rate" },
      svg("svg", { width: 62, height: 10, class: "ratebar", "aria-hidden": "true" },
        svg("rect", { x: 0, y: 1, width: 60, height: 8, class: "track" }),
        svg("rect", { x: 0, y: 1, width, height: 8, class: `fill ${tone}` })),
      " ", pct(rate));
  }

  function fillRows(table, rows, cells) {
    const tbody = table.tBodies[0];
    tbody.replaceChildren(...rows.map((row) => el("tr", {}, ...cells(row).map((cell) => el("td", {}, cell)))));
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
    if (response.status === 401) {
      window.location.assign("/dashboard/login");
      throw new Error("session ended");
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  // ---- refresh loop ----------------------------------------------------------------------
  function startRefreshing(load) {
    const toggle = $("auto-refresh");
    const updated = $("updated");
    let timer = null;
    async function tick() {
      clearTimeout(timer);
      try {
        await load();
        updated.textContent = `updated ${new Date().toLocaleTimeString("en-IN", { hour12: false })}`;
        updated.classList.remove("error");
        body.dataset.loaded = "true";
      } catch (error) {
        updated.textContent = `refresh failed: ${error.message}`;
        updated.classList.add("error");
      }
      if (toggle.checked) timer = setTimeout(tick, refreshMs);
    }
    toggle.addEventListener("change", () => (toggle.checked ? tick() : clearTimeout(timer)));
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) clearTimeout(timer);
      else if (toggle.checked) tick();
    });
    tick();
    return tick;
  }

  // ---- overview --------------------------------------------------------------------------
  function seriesChart(container, series, bucketSeconds) {
    const width = 760, height = 220, left = 40, right = 44, top = 10, bottom = 26;
    const plotW = width - left - right, plotH = height - top - bottom;
    const max = niceMax(Math.max(2, ...series.map((p) => p.payments)));
    const step = plotW / Math.max(1, series.length);
    const barW = Math.max(2, step * 0.7);
    const y = (value) => top + plotH - (value / max) * plotH;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "series", role: "img" });
    for (const fraction of [0, 0.5, 1]) {
      const gy = top + plotH - fraction * plotH;
      chart.append(svg("line", { x1: left, x2: left + plotW, y1: gy, y2: gy, class: "grid" }),
        svg("text", { x: left - 6, y: gy + 4, class: "axis", "text-anchor": "end" }, count(Math.round(max * fraction))),
        svg("text", { x: left + plotW + 6, y: gy + 4, class: "axis rate-axis" }, `${fraction * 100}%`));
    }
    const points = [];
    series.forEach((point, index) => {
      const x = left + index * step + (step - barW) / 2;
      const other = Math.max(0, point.payments - point.succeeded - point.failed - point.blocked);
      let base = 0;
      const group = svg("g", { class: "bucket" },
        svg("title", {}, `${when(point.start)}: ${point.payments} payments, ${point.succeeded} succeeded, ` +
          `${point.failed} failed, ${point.blocked} blocked, success rate ${pct(point.success_rate)}`));
      for (const [value, tone] of [[point.succeeded, "ok"], [point.failed, "bad"], [point.blocked, "blocked"], [other, "other"]]) {
        if (value <= 0) continue;
        group.append(svg("rect", { x, width: barW, y: y(base + value), height: y(base) - y(base + value), class: `bar ${tone}` }));
        base += value;
      }
      chart.append(group);
      if (point.success_rate !== null) {
        points.push([x + barW / 2, top + plotH - point.success_rate * plotH]);
      }
    });
    if (points.length > 1) {
      chart.append(svg("polyline", { points: points.map((p) => p.join(",")).join(" "), class: "rate-line" }));
    }
    for (const [x, py] of points) chart.append(svg("circle", { cx: x, cy: py, r: 2.5, class: "rate-dot" }));
    const labelEvery = Math.max(1, Math.ceil(series.length / 6));
    series.forEach((point, index) => {
      if (index % labelEvery !== 0) return;
      const date = new Date(point.start);
      const text = bucketSeconds >= 86400
        ? date.toLocaleDateString("en-IN", { day: "2-digit", month: "short" })
        : date.toLocaleTimeString("en-IN", { hour: "2-digit", minute: "2-digit", hour12: false });
      chart.append(svg("text", { x: left + index * step + step / 2, y: height - 8, class: "axis", "text-anchor": "middle" }, text));
    });
    container.replaceChildren(chart);
  }

  function fraudChart(container, decisions) {
    const names = ["ALLOW", "REVIEW", "BLOCK"];
    const max = Math.max(1, ...names.map((name) => decisions[name] || 0));
    const chart = svg("svg", { viewBox: "0 0 360 84", class: "fraud", role: "img" });
    names.forEach((name, index) => {
      const value = decisions[name] || 0;
      const yy = 6 + index * 26;
      chart.append(
        svg("text", { x: 0, y: yy + 14, class: "axis" }, name),
        svg("rect", { x: 64, y: yy, width: 240, height: 18, class: "track" }),
        svg("rect", { x: 64, y: yy, width: Math.round((value / max) * 240), height: 18, class: `bar f-${name.toLowerCase()}` }),
        svg("text", { x: 312, y: yy + 14, class: "axis" }, count(value)));
    });
    container.replaceChildren(chart);
  }

  function matrix(table, rows) {
    const connectors = [...new Set(rows.map((r) => r.connector))].sort();
    const methods = [...new Set(rows.map((r) => r.method))].sort();
    const cell = new Map(rows.map((r) => [`${r.connector}\u0000${r.method}`, r]));
    table.tHead.replaceChildren(el("tr", {}, el("th", {}, "Connector"), ...methods.map((m) => el("th", {}, m))));
    table.tBodies[0].replaceChildren(...connectors.map((connector) => el("tr", {}, el("th", {}, connector),
      ...methods.map((method) => {
        const r = cell.get(`${connector}\u0000${method}`);
        return el("td", { title: r ? `${r.payments} payments` : null }, r ? rateBar(r.success_rate) : "–");
      }))));
  }

  function paymentLink(id) {
    return el("a", { href: `/dashboard/payments/${encodeURIComponent(id)}`, class: "mono" }, id);
  }

  function customerText(customer) {
    return [customer.name, customer.email, customer.phone].filter(Boolean).join(" · ") || customer.id || "–";
  }

  function overview() {
    const params = new URLSearchParams(window.location.search);
    const state = {
      window: params.get("window") || body.dataset.defaultWindow,
      q: params.get("q") || "",
      status: params.get("status") || "",
    };
    $("search-q").value = state.q;
    $("search-status").value = state.status;

    function syncUrl() {
      const next = new URLSearchParams();
      for (const [name, value] of Object.entries(state)) if (value) next.set(name, value);
      history.replaceState(null, "", `/dashboard?${next}`);
      for (const button of document.querySelectorAll("button.window")) {
        button.classList.toggle("active", button.dataset.window === state.window);
      }
    }

    async function loadSummary() {
      const s = await getJSON(`/dashboard/api/summary?window=${encodeURIComponent(state.window)}`);
      $("kpi-payments").textContent = count(s.totals.payments);
      $("kpi-succeeded").textContent = count(s.totals.succeeded);
      $("kpi-rate").textContent = pct(s.totals.success_rate);
      $("kpi-volume").textContent = s.totals.volume;
      $("kpi-blocked").textContent = count(s.totals.blocked);
      seriesChart($("chart-series"), s.series, s.bucket_seconds);
      fillRows($("by-connector"), s.by_connector, (r) => [r.connector, count(r.payments), rateBar(r.success_rate), r.volume]);
      fillRows($("by-method"), s.by_method, (r) => [r.method, count(r.payments), rateBar(r.success_rate), r.volume]);
      matrix($("by-connector-method"), s.by_connector_method);
      fillRows($("latency"), s.latency, (r) => [r.connector, count(r.attempts), ms(r.p50_ms), ms(r.p95_ms), ms(r.p99_ms)]);
      fraudChart($("chart-fraud"), s.fraud.decisions);
      fillRows($("fraud-reasons"), s.fraud.reasons, (r) => [el("span", { title: r.code }, r.message || r.code), count(r.payments)]);
    }

    async function loadPayments() {
      const query = new URLSearchParams({ limit: "25" });
      if (state.q) query.set("q", state.q);
      if (state.status) query.set("status", state.status);
      const data = await getJSON(`/dashboard/api/payments?${query}`);
      fillRows($("payments"), data.payments, (p) => [
        paymentLink(p.id), when(p.created_at), p.amount, badge(p.status), p.method.label,
        p.connector, p.fraud_decision ? `${p.fraud_decision} (${p.fraud_score ?? "–"})` : "–",
        customerText(p.customer)]);
      $("payments-empty").hidden = data.payments.length > 0;
    }

    const refresh = startRefreshing(() => Promise.all([loadSummary(), loadPayments()]));
    for (const button of document.querySelectorAll("button.window")) {
      button.addEventListener("click", () => { state.window = button.dataset.window; syncUrl(); refresh(); });
    }
    $("search").addEventListener("submit", (event) => {
      event.preventDefault();
      state.q = $("search-q").value.trim();
      state.status = $("search-status").value;
      syncUrl();
      refresh();
    });
    syncUrl();
  }

  // ---- payment detail --------------------------------------------------------------------
  function facts(dl, pairs) {
    dl.replaceChildren(...pairs.filter(([, value]) => value !== null && value !== undefined && value !== "")
      .flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  }

  const DELIVERY_LABELS = {
    id: "Delivery", endpoint_id: "Endpoint", event_type: "Event", sequence: "Seq", status: "Status",
    attempts: "Attempts", attempt_count: "Attempts", response_status: "HTTP", last_status_code: "HTTP",
    last_response_status: "HTTP", last_error: "Last error", next_attempt_at: "Next attempt",
    delivered_at: "Delivered", finished_at: "Finished", redelivery_of: "Redelivery of",
    created_at: "Created",
  };

  function deliveries(table, note, rows) {
    if (rows === null) {
      table.hidden = true;
      note.hidden = false;
      note.textContent = "Merchant webhooks are not enabled on this server yet (no delivery records).";
      return;
    }
    table.hidden = rows.length === 0;
    note.hidden = rows.length > 0;
    note.textContent = "No webhook deliveries for this payment yet.";
    const columns = Object.keys(DELIVERY_LABELS).filter((key) => rows.some((row) => key in row));
    table.tHead.replaceChildren(el("tr", {}, ...columns.map((key) => el("th", {}, DELIVERY_LABELS[key]))));
    fillRows(table, rows, (row) => columns.map((key) => {
      const value = row[key];
      if (key === "status") return badge(value);
      if (key.endsWith("_at")) return when(value);
      return value === null || value === undefined ? "–" : String(value);
    }));
  }

  function payment() {
    const id = body.dataset.paymentId;
    async function load() {
      const p = await getJSON(`/dashboard/api/payments/${encodeURIComponent(id)}`);
      $("payment-status").replaceChildren(badge(p.status));
      facts($("summary"), [
        ["Amount", p.amount], ["Refunded", p.refunded], ["Method", p.method.label],
        ["Customer", customerText(p.customer)], ["Customer id", p.customer.id],
        ["Connector", p.connector], ["PSP reference", p.connector_payment_id],
        ["Description", p.description], ["IP · country", [p.ip_address, p.country].filter(Boolean).join(" · ")],
        ["Failure", p.failure ? `${p.failure.code}: ${p.failure.message}` : null],
        ["Created", when(p.created_at)], ["Updated", when(p.updated_at)], ["Version", p.version],
      ]);
      const fraud = p.fraud;
      $("fraud-head").replaceChildren("Decision ", badge(fraud.decision || "NONE"), ` · score ${fraud.score ?? "–"} / 100`);
      fillRows($("fraud-reasons"), fraud.reasons, (r) => [el("span", { class: "mono" }, r.code), r.message, String(r.score ?? "–")]);
      $("fraud-reasons").hidden = fraud.reasons.length === 0;
      $("fraud-none").hidden = fraud.reasons.length > 0;
      $("fraud-unavailable").textContent = fraud.unavailable_signals.length
        ? `Signals unavailable: ${fraud.unavailable_signals.join("; ")}` : "";
      const routing = p.routing;
      facts($("routing"), [
        ["Algorithm", routing.algorithm], ["Chosen", routing.chosen], ["Reason", routing.reason],
        ["Fallbacks", routing.fallbacks.join(", ")], ["Degraded", routing.degraded ? "yes (Redis unavailable: static priority)" : null],
      ]);
      fillRows($("routing-candidates"), routing.candidates, (c) => [c.connector, c.score === null ? "–" : Number(c.score).toFixed(3), c.note]);
      $("routing-candidates").hidden = routing.candidates.length === 0;
      fillRows($("attempts"), p.attempts, (a) => [
        String(a.number), el("span", { class: "mono" }, a.id), a.connector, el("span", { class: "mono" }, a.connector_payment_id || "–"),
        badge(a.status), a.error_code ? `${a.error_code}: ${a.error_message}` : "–", ms(a.latency_ms), when(a.created_at)]);
      $("attempts").hidden = p.attempts.length === 0;
      $("attempts-empty").hidden = p.attempts.length > 0;
      fillRows($("refunds"), p.refunds, (r) => [el("span", { class: "mono" }, r.id), r.amount, badge(r.status), r.reason || "–", when(r.created_at)]);
      $("refunds").hidden = p.refunds.length === 0;
      $("refunds-empty").hidden = p.refunds.length > 0;
      deliveries($("deliveries"), $("deliveries-note"), p.webhook_deliveries);
      fillRows($("audit"), p.audit, (e) => [
        when(e.created_at), e.action, e.actor,
        e.before_status ? `${e.before_status} → ${e.after_status}` : e.after_status || "–",
        Object.keys(e.details).length ? el("code", {}, JSON.stringify(e.details)) : "–"]);
    }
    startRefreshing(load);
  }

  if (page === "overview") overview();
  else if (page === "payment") payment();
})();
