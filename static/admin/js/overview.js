/* 概览: fund overview cards, daily chart (30/90 days), rule performance and recharge by source. */
"use strict";
(function () {
  const C = window.Console;

  function chart(holder, el, option) {
    C.after(holder, () => {
      const target = document.getElementById(el);
      if (!target || !window.echarts) return;
      const instance = window.echarts.init(target);
      instance.setOption(option);
      C._charts.push(instance);
      target.dataset.rendered = "1";
    });
  }
  const yuanAxis = { type: "value", axisLabel: { formatter: (v) => (v / 100).toLocaleString("zh-CN") } };
  const yuanTip = (params) => {
    const list = Array.isArray(params) ? params : [params];
    return [list[0].axisValueLabel || list[0].name]
      .concat(list.map((p) => `${p.marker}${p.seriesName}：${C.yuan(p.value)} 元`)).join("<br>");
  };

  function stat(label, fen, sub) {
    return `<div class="stat"><div class="label">${label}</div>
      <div class="value">${C.yuan(fen)}<small>元</small></div><div class="sub">${sub || "&nbsp;"}</div></div>`;
  }

  async function tryGet(path, params) {
    try {
      return await C.get(path, params);
    } catch (e) {
      if (e.status === 404) return null;
      throw e;
    }
  }

  C.pages.overview = {
    title: "概览",
    async render(holder, route) {
      const p = route.params;
      const days = p.days === "90" ? 90 : 30;
      const scope = { store: p.store, region: p.region };
      const [overview, daily, byRule, bySourceNew] = await Promise.all([
        tryGet("/overview", scope),
        tryGet("/overview/daily", { days, ...scope }),
        C.get("/recharge-stats", { group_by: "rule", store: p.store }),
        tryGet("/overview/by-source", {}),
      ]);
      const bySource = bySourceNew ? (bySourceNew.items || bySourceNew)
        : (await C.get("/recharge-stats", { group_by: "src", store: p.store })).items;

      const storeSelect = C.isStoreStaff() ? "" :
        `<form class="filters" id="ov-filter" style="margin:0">${await C.storeField("store", p.store)}
         <div class="actions"><button class="btn" type="submit">查看</button></div></form>`;
      let html = `<div class="panel-head"><span class="muted">${overview ? "数据截至 " + C.time(overview.as_of) : ""}</span>${storeSelect}</div>`;
      if (!overview) {
        html += C.missing("资金概览");
      } else {
        const b = overview.balance || {}, t = overview.today || {}, cu = overview.cumulative || {}, pe = overview.pending || {};
        // A member's balance spans stores: the API gives it to HQ only, a store sees its flows.
        const merchantWide = b.total_fen !== undefined && b.total_fen !== null;
        html += `<div class="cards" id="ov-cards">
          ${merchantWide ? stat("储值余额合计", b.total_fen, `本金 ${C.yuan(b.principal_fen)} · 赠送 ${C.yuan(b.bonus_fen)}<br>有余额会员 ${C.num(b.members_with_balance)} 人`) : ""}
          ${merchantWide ? stat("冻结中（未结算）", pe.held_fen ?? b.held_fen, `已支付未入账 ${C.num(pe.uncredited_orders)} 笔 · ${C.yuan(pe.uncredited_fen)} 元`) : ""}
          ${stat("今日充值", t.recharge_fen, `${C.num(t.recharge_count)} 笔`)}
          ${stat("今日消费", t.consumption_fen, `${C.num(t.consumption_count)} 笔 · 退款 ${C.yuan(t.refund_fen)} 元`)}
          ${stat("累计充值", cu.recharge_fen, `${C.num(cu.recharge_members)} 人 · ${C.num(cu.recharge_count)} 次<br>累计赠送 ${C.yuan(cu.bonus_given_fen)} 元`)}
          ${overview.points_liability === null || overview.points_liability === undefined ? "" :
            `<div class="stat"><div class="label">积分负债</div><div class="value">${C.num(overview.points_liability)}<small>分</small></div><div class="sub">未过期积分合计</div></div>`}
        </div>${merchantWide ? "" : '<p class="muted" style="margin-top:-6px">会员余额跨门店使用，余额与积分合计仅总部可见；此处为本门店的充值与消费。</p>'}`;
      }
      html += `<section class="panel"><div class="panel-head"><h2>每日充值与消费</h2>
          <div class="seg" id="ov-days"><button data-days="30" class="${days === 30 ? "on" : ""}">近 30 天</button><button data-days="90" class="${days === 90 ? "on" : ""}">近 90 天</button></div></div>
          ${daily ? '<div id="chart-daily" class="chart"></div>' : C.missing("每日趋势")}</section>
        <div class="grid-2">
          <section class="panel"><div class="panel-head"><h2>充值规则效果</h2></div>
            ${byRule.items.length ? '<div id="chart-rules" class="chart"></div>' : '<div class="empty">暂无已支付订单</div>'}</section>
          <section class="panel"><div class="panel-head"><h2>充值来源</h2></div>
            ${bySource.length ? '<div id="chart-source" class="chart"></div>' : '<div class="empty">暂无已支付订单</div>'}</section>
        </div>`;
      html += C.section("规则明细", C.table([
        { title: "规则", render: (r) => C.esc(r.rule_name || "—") },
        { title: "订单", num: true, render: (r) => C.num(r.orders) },
        { title: "已支付", num: true, render: (r) => C.num(r.paid_orders) },
        { title: "充值会员", num: true, render: (r) => C.num(r.members) },
        { title: "实收（元）", num: true, render: (r) => C.yuan(r.paid_fen) },
        { title: "赠送（元）", num: true, render: (r) => C.yuan(r.bonus_fen) },
        { title: "发券", num: true, render: (r) => C.num(r.coupons_granted) },
        { title: "未发券", num: true, render: (r) => C.num(r.coupons_lapsed) },
      ], byRule.items, { empty: "暂无充值订单" }));
      if (overview && overview.by_store && overview.by_store.length) {
        html += C.section("按门店（今日）", C.table([
          { title: "门店", render: (r) => C.esc(r.store_name || r.store_code) },
          { title: "今日充值（元）", num: true, render: (r) => C.yuan(r.recharge_today_fen) },
          { title: "今日消费（元）", num: true, render: (r) => C.yuan(r.consumption_today_fen) },
        ], overview.by_store));
      }
      holder.innerHTML = html;

      const filter = holder.querySelector("#ov-filter");
      if (filter) filter.onsubmit = (ev) => { ev.preventDefault(); C.go("overview", { ...C.formParams(filter), days }); };
      holder.querySelectorAll("#ov-days button").forEach((b) => (b.onclick = () => C.go("overview", { ...p, days: b.dataset.days })));

      if (daily) {
        const rows = daily.items || daily;
        chart(holder, "chart-daily", {
          tooltip: { trigger: "axis", formatter: yuanTip },
          legend: { top: 0 },
          grid: { left: 60, right: 20, top: 36, bottom: 30 },
          xAxis: { type: "category", data: rows.map((r) => r.date.slice(5)) },
          yAxis: yuanAxis,
          series: [
            { name: "充值", type: "line", showSymbol: false, data: rows.map((r) => r.recharge_fen), areaStyle: { opacity: 0.08 } },
            { name: "消费", type: "line", showSymbol: false, data: rows.map((r) => r.consumption_fen) },
            { name: "退款", type: "line", showSymbol: false, data: rows.map((r) => r.refund_fen) },
          ],
        });
      }
      if (byRule.items.length) {
        const rules = byRule.items;
        chart(holder, "chart-rules", {
          tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, formatter: yuanTip },
          legend: { top: 0 },
          grid: { left: 60, right: 20, top: 36, bottom: 50 },
          xAxis: { type: "category", data: rules.map((r) => r.rule_name || "—"), axisLabel: { interval: 0, rotate: rules.length > 4 ? 30 : 0 } },
          yAxis: yuanAxis,
          series: [
            { name: "实收", type: "bar", data: rules.map((r) => r.paid_fen), barMaxWidth: 36 },
            { name: "赠送", type: "bar", data: rules.map((r) => r.bonus_fen), barMaxWidth: 36 },
          ],
        });
      }
      if (bySource.length) {
        chart(holder, "chart-source", {
          tooltip: { trigger: "item", formatter: (x) => `${x.name}：${C.yuan(x.value)} 元（${x.percent}%）` },
          legend: { bottom: 0, type: "scroll" },
          series: [{ type: "pie", radius: ["38%", "64%"], center: ["50%", "45%"],
            data: bySource.map((r) => ({ name: r.src || r.key || "未标记", value: r.paid_fen })) }],
        });
      }
    },
  };
})();
