/* Console core: the API client (bearer token in sessionStorage), money in yuan, a small hash router,
   tables with paging, filter forms kept in the URL, dialogs and toasts. Plain browser JS, no build. */
"use strict";

const C = (window.Console = {
  pages: {},
  me: null,
  TOKEN_KEY: "console_token",
});

/* ---------- API ---------- */
class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code || "请求失败");
    this.status = status;
    this.code = code;
    this.details = details;
  }
}
C.ApiError = ApiError;

C.token = () => sessionStorage.getItem(C.TOKEN_KEY);

C.api = async function (method, path, body, opts = {}) {
  const headers = { Accept: "application/json" };
  const token = C.token();
  if (token) headers.Authorization = "Bearer " + token;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch("/admin/api" + path, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError(0, "network", "网络连接失败，请稍后重试");
  }
  if (res.status === 401 && !opts.noLogout) {
    C.logout("登录已失效，请重新登录");
    throw new ApiError(401, "unauthorized", "请重新登录");
  }
  if (opts.raw) {
    if (!res.ok) throw await C.errorOf(res);
    return res;
  }
  if (!res.ok) throw await C.errorOf(res);
  if (res.status === 204) return null;
  return res.json();
};
C.get = (path, params) => C.api("GET", path + C.qs(params));
C.post = (path, body) => C.api("POST", path, body === undefined ? {} : body);

C.errorOf = async function (res) {
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  const err = (data && (data.error || data)) || {};
  let message = err.message;
  if (!message && res.status === 404) message = "未找到";
  if (!message && res.status === 422 && data && data.errors) message = "输入有误：" + JSON.stringify(data.errors);
  return new ApiError(res.status, err.code, message || `请求失败（${res.status}）`, err.details);
};

C.qs = function (params) {
  if (!params) return "";
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(v));
  }
  return parts.length ? "?" + parts.join("&") : "";
};

/* Download a file that needs the bearer token (QR codes, exports): fetch it, then save the blob. */
C.download = async function (path, fallbackName) {
  const res = await C.api("GET", path, undefined, { raw: true });
  const blob = await res.blob();
  let name = fallbackName;
  const cd = res.headers.get("Content-Disposition") || "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(cd);
  const plain = /filename="?([^";]+)"?/i.exec(cd);
  if (star) name = decodeURIComponent(star[1]);
  else if (plain) name = plain[1];
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
};

/* ---------- money, time, words ---------- */
C.yuan = function (fen, opts = {}) {
  if (fen === null || fen === undefined || fen === "") return "—";
  const n = Number(fen);
  const neg = n < 0;
  const abs = Math.abs(Math.trunc(n));
  let whole = String(Math.floor(abs / 100));
  if (opts.group !== false) whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const cents = String(abs % 100).padStart(2, "0");
  const sign = neg ? "-" : opts.sign && abs ? "+" : "";
  return `${sign}${whole}.${cents}`;
};
C.yuanText = (fen) => C.yuan(fen) + " 元";
/* "100", "88.5", "0.01" -> fen (integer), or null. No floating point. */
C.parseYuan = function (text) {
  const s = String(text || "").trim();
  const m = /^(\d{1,9})(?:\.(\d{1,2}))?$/.exec(s);
  if (!m) return null;
  return Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));
};
C.num = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("zh-CN"));
C.time = function (iso) {
  if (!iso) return "—";
  const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : iso + "Z");
  if (isNaN(d)) return iso;
  // China time, written as the server writes it for people (2026-05-01 09:30:00)
  return new Date(d.getTime() + 8 * 3600_000).toISOString().slice(0, 19).replace("T", " ");
};
/* A date from a filter (merchant's day, Asia/Shanghai) as the ISO bound the existing lists take. */
C.dayStart = (day) => (day ? `${day}T00:00:00+08:00` : undefined);
C.dayEnd = function (day) {
  if (!day) return undefined;
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10) + "T00:00:00+08:00";
};
C.today = () => new Date(Date.now() + 8 * 3600_000).toISOString().slice(0, 10);

C.ROLE = { hq_admin: "总部管理员", region_manager: "区域经理", store_manager: "店长", clerk: "店员" };
C.KIND = { credit: "充值/赠送", debit: "消费", hold: "冻结", capture: "扣款", void: "解冻", refund: "退款",
  withdrawal: "提现", reversal: "冲正" };
C.CARD_STATUS = { active: ["正常", "ok"], frozen: ["已冻结", "bad"], lost: ["已挂失", "warn"] };
C.ORDER_STATUS = { pending: ["待支付", ""], paid: ["已支付", "ok"], paid_uncredited: ["已支付待入账", "warn"], closed: ["已关闭", ""],
  refunded: ["已退款", ""], refunding: ["退款中", "warn"], failed: ["失败", "bad"], processing: ["处理中", "warn"] };

C.esc = function (v) {
  return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
};
C.badge = (map, key) => {
  const [text, cls] = map[key] || [key || "—", ""];
  return `<span class="badge ${cls}">${C.esc(text)}</span>`;
};
C.el = function (html) {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  return t.content.firstElementChild;
};
C.uid = () => (crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2));

C.isHQ = () => C.me && C.me.role === "hq_admin";
C.isStoreStaff = () => C.me && (C.me.role === "clerk" || C.me.role === "store_manager");
C.can = function (permission) {
  const p = {
    hq_admin: ["withdraw_offline", "reverse_entry", "manage_staff", "recharge_offline", "manage_members", "manage_rules"],
    region_manager: ["withdraw_offline", "reverse_entry", "recharge_offline", "manage_members", "manage_rules"],
    store_manager: ["withdraw_offline", "recharge_offline", "manage_members"],
    clerk: ["recharge_offline"],
  };
  return C.me && (p[C.me.role] || []).includes(permission);
};
/* The store a store-level staff member acts in (their own); HQ and region staff pick one. */
C.myStoreId = () => (C.me && C.me.store_id) || (C.me && C.me.stores && C.me.stores.length === 1 ? C.me.stores[0].id : null);

/* Stores for the filters: /stores when the endpoint exists, else the staff's own stores. */
C.stores = async function () {
  if (C._stores) return C._stores;
  let list = [];
  try {
    const data = await C.get("/stores", { per_page: 100 });
    list = data.items || data;
  } catch (e) {
    list = (C.me && C.me.stores) || [];
  }
  C._stores = list;
  return list;
};
C.storeOptions = async function (selected, { any = true } = {}) {
  const stores = await C.stores();
  const opts = stores.map((s) => `<option value="${C.esc(s.code)}" ${s.code === selected ? "selected" : ""}>${C.esc(s.name || s.code)}</option>`);
  return (any ? `<option value="">${C.isStoreStaff() ? "我的门店" : "全部门店"}</option>` : "") + opts.join("");
};
/* A store filter: a select when the stores are known, else a code input. */
C.storeField = async function (name, value) {
  const stores = await C.stores();
  if (C.isStoreStaff() && stores.length <= 1) return ""; // one store: nothing to choose
  if (stores.length) return `<label>门店<select name="${name}">${await C.storeOptions(value)}</select></label>`;
  return `<label>门店编号<input name="${name}" value="${C.esc(value || "")}" placeholder="如 sh01" maxlength="32"></label>`;
};

/* ---------- toast, dialog ---------- */
C.toast = function (text, isError) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.className = "toast" + (isError ? " error" : "");
  t.hidden = false;
  clearTimeout(C._toastTimer);
  C._toastTimer = setTimeout(() => (t.hidden = true), isError ? 6000 : 3000);
};

/* A dialog with a form; onOk(form) may throw ApiError to show its message and keep the dialog open.
   Resolves with onOk's result, or null when cancelled. */
C.dialog = function ({ title, body, okText = "确定", danger = false, onOk, onInput }) {
  const dlg = document.getElementById("dialog");
  const form = document.getElementById("dialog-form");
  const ok = document.getElementById("dialog-ok");
  const err = document.getElementById("dialog-error");
  document.getElementById("dialog-title").textContent = title;
  const bodyEl = document.getElementById("dialog-body");
  bodyEl.innerHTML = body;
  ok.textContent = okText;
  ok.className = "btn " + (danger ? "danger" : "primary");
  ok.disabled = false;
  err.textContent = "";
  return new Promise((resolve) => {
    const done = (value) => {
      form.onsubmit = null;
      form.oninput = null;
      document.getElementById("dialog-cancel").onclick = null;
      dlg.onclose = null;
      if (dlg.open) dlg.close();
      resolve(value);
    };
    form.oninput = () => {
      err.textContent = "";
      if (onInput) onInput(form, bodyEl);
    };
    if (onInput) onInput(form, bodyEl);
    document.getElementById("dialog-cancel").onclick = () => done(null);
    dlg.onclose = () => done(null);
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      err.textContent = "";
      ok.disabled = true;
      try {
        const result = onOk ? await onOk(form, bodyEl) : true;
        if (result === false) { ok.disabled = false; return; }
        done(result === undefined ? true : result);
      } catch (e) {
        err.textContent = e.message;
        ok.disabled = false;
      }
    };
    dlg.showModal();
    const first = bodyEl.querySelector("input:not([type=hidden]), select, textarea");
    if (first) first.focus();
  });
};
C.fail = (message) => { throw new ApiError(400, "invalid_input", message); };

/* ---------- tables and paging ---------- */
/* columns: [{title, num?, wrap?, render(row) -> html}] */
C.table = function (columns, items, { onRow, empty = "暂无记录" } = {}) {
  if (!items || !items.length) return `<div class="empty">${empty}</div>`;
  const cls = (c) => [c.num ? "num" : "", c.wrap ? "wrap" : "", c.cls || ""].join(" ").trim();
  const head = columns.map((c) => `<th class="${cls(c)}">${c.title}</th>`).join("");
  const rows = items.map((row, i) => {
    const tds = columns.map((c) => `<td class="${cls(c)}">${c.render(row)}</td>`).join("");
    return `<tr data-i="${i}" class="${onRow ? "clickable" : ""}">${tds}</tr>`;
  }).join("");
  return `<div class="table-wrap"><table class="data"><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table></div>`;
};
C.bindRows = function (container, items, onRow) {
  container.querySelectorAll("tr[data-i]").forEach((tr) => {
    tr.addEventListener("click", (ev) => {
      if (ev.target.closest("button, a")) return;
      onRow(items[Number(tr.dataset.i)]);
    });
  });
};
C.pager = function (data, onPage) {
  const page = data.page || 1;
  const per = data.per_page || 20;
  const total = data.total;
  const pages = total === undefined ? null : Math.max(1, Math.ceil(total / per));
  const totalText = total === undefined ? "" : `共 ${C.num(total)}${data.total_capped ? "+" : ""} 条`;
  const hasNext = pages === null ? (data.items || []).length === per : page < pages;
  const el = C.el(`<div class="pager"><span>${totalText}</span>
    <button class="btn small" data-go="prev" ${page <= 1 ? "disabled" : ""}>上一页</button>
    <span>第 ${page}${pages ? " / " + pages : ""} 页</span>
    <button class="btn small" data-go="next" ${hasNext ? "" : "disabled"}>下一页</button></div>`);
  el.querySelector('[data-go="prev"]').onclick = () => onPage(page - 1);
  el.querySelector('[data-go="next"]').onclick = () => onPage(page + 1);
  return el;
};

/* ---------- routing and filters in the URL ---------- */
C.route = function () {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  const parts = (path || "overview").split("/").filter(Boolean);
  return { parts, params };
};
C.go = function (path, params) {
  const q = C.qs(params);
  const target = "#/" + path + q;
  if (location.hash === target) C.render();
  else location.hash = target;
};
C.formParams = function (form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) if (String(v).trim() !== "") out[k] = String(v).trim();
  return out;
};
/* Client-side check of a date range before asking the server (which refuses it too). */
C.checkRange = function (from, to) {
  if (from && to && from > to) return "开始日期不能晚于结束日期";
  if (from && to && (new Date(to) - new Date(from)) / 86400000 > 366) return "时间范围不能超过 366 天";
  return null;
};

C.section = (title, inner, extra = "") =>
  `<section class="panel"><div class="panel-head"><h2>${title}</h2>${extra}</div>${inner}</section>`;
C.missing = (what) =>
  `<div class="notice">${C.esc(what)}的接口尚未上线（服务器返回 404），此处暂无数据。</div>`;

C.logout = function (message) {
  const token = C.token();
  sessionStorage.removeItem(C.TOKEN_KEY);
  C.me = null;
  C._stores = null;
  if (token && !message) {
    fetch("/admin/api/auth/logout", { method: "POST", headers: { Authorization: "Bearer " + token } }).catch(() => {});
  }
  C.showLogin(message);
};
