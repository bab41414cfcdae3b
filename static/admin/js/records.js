/* 记录: ledger rows, recharge orders and balance payments, filtered and paged; a row opens the member
   or the order; the current filter can be exported to Excel. Filters live in the URL. */
"use strict";
(function () {
  const C = window.Console;
  const PER_PAGE = 20;

  const TABS = {
    ledger: { label: "资金流水", path: "/ledger", exportKind: "ledger" },
    orders: { label: "充值订单", path: "/recharge-orders", exportKind: "recharge_orders" },
    payments: { label: "余额支付", path: "/payments", exportKind: "payments" },
  };

  /* The URL's filter fields -> the list endpoint's query. */
  function query(tab, p) {
    const q = { page: p.page || 1, per_page: PER_PAGE, store: p.store };
    if (tab === "ledger") {
      Object.assign(q, { kind: p.kind, operator: p.operator, member: p.member, reference: p.reference,
        created_from: C.dayStart(p.from), created_to: C.dayEnd(p.to) });
    } else if (tab === "orders") {
      Object.assign(q, { status: p.status, rule_id: p.rule_id, src: p.src, out_trade_no: p.reference,
        created_from: C.dayStart(p.from), created_to: C.dayEnd(p.to) });
    } else {
      Object.assign(q, { status: p.status, order_no: p.reference, member: p.member, from: p.from, to: p.to });
    }
    return q;
  }

  const money = (r) => {
    const signed = r.amount_yuan || C.yuan(r.amount_fen);
    const cls = signed.startsWith("-") ? "neg" : signed.startsWith("+") ? "pos" : "";
    return `<span class="${cls}">${C.esc(signed)}</span>`;
  };
  const COLUMNS = {
    ledger: [
      { title: "时间", render: (r) => C.esc(r.time || C.time(r.created_at)) },
      { title: "类型", render: (r) => C.esc(r.kind_text || C.KIND[r.kind] || r.kind) },
      { title: "金额（元）", num: true, render: money },
      { title: "本金变动", num: true, cls: "hide-narrow", render: (r) => C.yuan(r.principal_delta_fen, { sign: true }) },
      { title: "赠送变动", num: true, cls: "hide-narrow", render: (r) => C.yuan(r.bonus_delta_fen, { sign: true }) },
      { title: "可用余额", num: true, render: (r) => C.yuan(r.balance_after && r.balance_after.available_fen) },
      { title: "会员", render: (r) => `<a href="#/members/${r.member_id}">#${r.member_id}</a>` },
      { title: "门店", render: (r) => C.esc(r.store_name || "—") },
      { title: "操作员", cls: "hide-narrow", render: (r) => C.esc(r.operator || "—") },
      { title: "单号", render: (r) => C.esc(r.reference || "—") },
    ],
    orders: [
      { title: "下单时间", render: (r) => C.time(r.created_at) },
      { title: "订单号", render: (r) => C.esc(r.out_trade_no) },
      { title: "状态", render: (r) => C.badge(C.ORDER_STATUS, r.status) },
      { title: "金额（元）", num: true, render: (r) => C.yuan(r.amount_fen) },
      { title: "赠送（元）", num: true, cls: "hide-narrow", render: (r) => C.yuan(r.bonus_fen) },
      { title: "规则", render: (r) => C.esc(r.rule_name || "自定义金额") },
      { title: "来源", render: (r) => C.esc(r.src || "—") },
      { title: "会员", render: (r) => `<a href="#/members/${r.member_id}">#${r.member_id}</a>` },
      { title: "支付时间", cls: "hide-narrow", render: (r) => C.time(r.paid_at) },
    ],
    payments: [
      { title: "时间", render: (r) => C.time(r.created_at) },
      { title: "订单号", render: (r) => C.esc(r.order_no) },
      { title: "状态", render: (r) => C.badge(C.ORDER_STATUS, r.status) },
      { title: "金额（元）", num: true, render: (r) => C.yuan(r.amount_fen) },
      { title: "余额支付", num: true, render: (r) => C.yuan(r.balance_fen) },
      { title: "微信支付", num: true, render: (r) => C.yuan(r.wechat_fen) },
      { title: "会员", render: (r) => (r.member_id ? `<a href="#/members/${r.member_id}">#${r.member_id}</a>` : "—") },
      { title: "门店", render: (r) => C.esc(r.store_name || r.store_code || "—") },
    ],
  };

  async function filterForm(tab, p) {
    const f = [await C.storeField("store", p.store)];
    if (tab === "ledger") {
      f.push(`<label>类型<select name="kind"><option value="">全部</option>${Object.entries(C.KIND).map(([k, v]) =>
        `<option value="${k}" ${p.kind === k ? "selected" : ""}>${v}</option>`).join("")}</select></label>`);
      f.push(`<label>会员卡号/手机号<input name="member" value="${C.esc(p.member || "")}" maxlength="20"></label>`);
      f.push(`<label>操作员<input name="operator" value="${C.esc(p.operator || "")}" placeholder="如 staff:2" maxlength="64"></label>`);
    } else {
      const statuses = tab === "orders" ? ["pending", "paid", "paid_uncredited", "closed"] : ["pending", "paid", "failed"];
      f.push(`<label>状态<select name="status"><option value="">全部</option>${statuses.map((s) =>
        `<option value="${s}" ${p.status === s ? "selected" : ""}>${C.ORDER_STATUS[s][0]}</option>`).join("")}</select></label>`);
    }
    if (tab === "orders") {
      let rules = [];
      try { rules = (await C.get("/rules")).items; } catch (e) { /* a clerk may not list rules */ }
      if (rules.length) {
        f.push(`<label>规则<select name="rule_id"><option value="">全部</option>${rules.map((r) =>
          `<option value="${r.id}" ${String(r.id) === p.rule_id ? "selected" : ""}>${C.esc(r.name)}</option>`).join("")}</select></label>`);
      }
      f.push(`<label>来源标记<input name="src" value="${C.esc(p.src || "")}" maxlength="32"></label>`);
    }
    if (tab === "payments") f.push(`<label>会员卡号/手机号<input name="member" value="${C.esc(p.member || "")}" maxlength="20"></label>`);
    f.push(`<label>订单号<input name="reference" value="${C.esc(p.reference || "")}" maxlength="64"></label>`);
    f.push(`<label>开始日期<input type="date" name="from" value="${C.esc(p.from || "")}"></label>`);
    f.push(`<label>结束日期<input type="date" name="to" value="${C.esc(p.to || "")}"></label>`);
    return `<form class="filters" id="rec-filter">${f.join("")}
      <div class="actions"><button class="btn primary" type="submit">查询</button>
      <button class="btn" type="button" id="rec-reset">重置</button>
      <button class="btn" type="button" id="rec-export">导出 Excel</button></div></form>`;
  }

  async function openOrder(order) {
    const rows = [
      ["订单号", order.out_trade_no], ["状态", (C.ORDER_STATUS[order.status] || [order.status])[0]],
      ["金额", C.yuanText(order.amount_fen)], ["赠送", C.yuanText(order.bonus_fen)], ["积分", order.points],
      ["规则", order.rule_name || "自定义金额"], ["奖励", (order.rewards || []).join("、") || "—"], ["来源", order.src || "—"],
      ["微信支付单号", order.transaction_id || "—"], ["下单时间", C.time(order.created_at)], ["支付时间", C.time(order.paid_at)],
    ];
    const go = await C.dialog({
      title: "充值订单",
      body: `<div class="kv">${rows.map(([k, v]) => `<span>${k}</span><b>${C.esc(v)}</b>`).join("")}</div>`,
      okText: "查看会员",
    });
    if (go) C.go("members/" + order.member_id);
  }
  async function openPayment(row) {
    let pay = row;
    try { if (row.id) pay = await C.get("/payments/" + row.id); } catch (e) { /* the list row is enough */ }
    const go = await C.dialog({
      title: "余额支付",
      body: `<div class="kv"><span>订单号</span><b>${C.esc(pay.order_no)}</b><span>状态</span><b>${C.esc((C.ORDER_STATUS[pay.status] || [pay.status])[0])}</b>
        <span>金额</span><b>${C.yuanText(pay.amount_fen)}</b><span>余额支付</span><b>${C.yuanText(pay.balance_fen)}</b>
        <span>微信支付</span><b>${C.yuanText(pay.wechat_fen)}</b><span>说明</span><b>${C.esc(pay.summary || "—")}</b></div>`,
      okText: "查看会员",
    });
    if (go) C.go("members/" + pay.member_id);
  }

  C.startExport = async function (kind, filters) {
    const job = await C.post("/exports", { kind, filters });
    const ids = JSON.parse(sessionStorage.getItem("console_exports") || "[]");
    if (!ids.includes(job.id)) ids.unshift(job.id);
    sessionStorage.setItem("console_exports", JSON.stringify(ids.slice(0, 20)));
    C.go("exports", { id: job.id });
  };

  C.pages.records = {
    title: "记录",
    async render(holder, route) {
      const p = route.params;
      const tab = TABS[route.parts[1]] ? route.parts[1] : "ledger";
      const def = TABS[tab];
      const tabs = `<nav class="tabs">${Object.entries(TABS).map(([k, t]) =>
        `<a href="#/records/${k}" class="${k === tab ? "on" : ""}">${t.label}</a>`).join("")}</nav>`;
      const form = await filterForm(tab, p);
      const rangeError = C.checkRange(p.from, p.to);
      let body;
      let data = null;
      if (rangeError) body = `<div class="notice">${rangeError}</div>`;
      else {
        try {
          data = await C.get(def.path, query(tab, p));
          body = C.table(COLUMNS[tab], data.items, { onRow: true });
        } catch (e) {
          if (e.status === 404 && tab === "payments") body = C.missing("余额支付记录列表");
          else body = `<div class="notice" id="rec-error">${C.esc(e.message)}</div>`;
        }
      }
      holder.innerHTML = `<section class="panel">${tabs}${form}<div id="rec-table">${body}</div></section>`;
      const formEl = holder.querySelector("#rec-filter");
      formEl.onsubmit = (ev) => {
        ev.preventDefault();
        C.go("records/" + tab, C.formParams(formEl));
      };
      holder.querySelector("#rec-reset").onclick = () => C.go("records/" + tab);
      holder.querySelector("#rec-export").onclick = async () => {
        const filters = query(tab, C.formParams(formEl));
        delete filters.page;
        delete filters.per_page;
        try {
          await C.startExport(def.exportKind, filters);
        } catch (e) {
          C.toast(e.status === 404 ? "导出接口尚未上线" : e.message, true);
        }
      };
      if (data) {
        const tableEl = holder.querySelector("#rec-table");
        C.bindRows(tableEl, data.items, (row) => {
          if (tab === "orders") openOrder(row);
          else if (tab === "payments") openPayment(row);
          else C.go("members/" + row.member_id);
        });
        if (data.items.length || (data.page || 1) > 1) {
          tableEl.appendChild(C.pager(data, (page) => C.go("records/" + tab, { ...p, page })));
        }
      }
    },
  };
})();
