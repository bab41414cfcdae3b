/* 门店与员工 (HQ): regions, stores, staff (create, deactivate); 审计日志: searchable audit log. */
"use strict";
(function () {
  const C = window.Console;
  const list = (d) => (Array.isArray(d) ? d : d.items || []);
  const active = (v) => (v === false ? '<span class="badge bad">停用</span>' : '<span class="badge ok">启用</span>');

  async function safe(path, params) {
    try { return await C.get(path, params); } catch (e) { if (e.status === 404) return null; throw e; }
  }

  async function createDialog(kind, regions, stores) {
    const forms = {
      region: { title: "新建区域", path: "/regions", body: `<label>编码</label><input name="code" required maxlength="32" placeholder="如 east">
          <label>名称</label><input name="name" required maxlength="64">` },
      store: { title: "新建门店", path: "/stores", body: `<label>编码</label><input name="code" required maxlength="32" placeholder="如 sh03">
          <label>名称</label><input name="name" required maxlength="64">
          <label>区域</label><select name="region_code">${regions.map((r) => `<option value="${C.esc(r.code)}">${C.esc(r.name || r.code)}</option>`).join("")}</select>` },
      staff: { title: "新建员工", path: "/staff", body: `<label>账号</label><input name="username" required maxlength="64">
          <label>初始密码</label><input name="password" type="password" required minlength="8" maxlength="256" autocomplete="new-password">
          <label>角色</label><select name="role">${Object.entries(C.ROLE).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select>
          <label>门店</label><select name="store_code"><option value="">（店长、店员必选）</option>${stores.map((s) => `<option value="${C.esc(s.code)}">${C.esc(s.name || s.code)}</option>`).join("")}</select>
          <label>区域</label><select name="region_code"><option value="">（区域经理必选）</option>${regions.map((r) => `<option value="${C.esc(r.code)}">${C.esc(r.name || r.code)}</option>`).join("")}</select>` },
    }[kind];
    const done = await C.dialog({
      title: forms.title, okText: "创建", body: `<div class="form-grid">${forms.body}</div>`,
      onOk: (form) => C.post(forms.path, C.formParams(form)),
    });
    if (done) { C._stores = null; C.toast("已创建"); C.render(); }
  }

  C.pages.org = {
    title: "门店与员工",
    async render(holder) {
      const [regions, stores, staff] = await Promise.all([safe("/regions"), safe("/stores", { per_page: 100 }), safe("/staff", { per_page: 100 })]);
      if (!regions && !stores && !staff) { holder.innerHTML = C.missing("门店与员工管理"); return; }
      const R = regions ? list(regions) : [], S = stores ? list(stores) : [], P = staff ? list(staff) : [];
      const storeName = (s) => (s ? s.name || s.code : "—");
      holder.innerHTML =
        `<div class="grid-2">` +
        C.section("区域", regions ? C.table([
          { title: "编码", render: (r) => C.esc(r.code) }, { title: "名称", render: (r) => C.esc(r.name) },
        ], R) : C.missing("区域"), '<button class="btn small" data-new="region">新建区域</button>') +
        C.section("门店", stores ? C.table([
          { title: "编码", render: (s) => C.esc(s.code) }, { title: "名称", render: (s) => C.esc(s.name) },
          { title: "区域", render: (s) => C.esc(s.region_name || s.region_code || (s.region && (s.region.name || s.region.code)) || "—") },
          { title: "状态", render: (s) => active(s.active) },
        ], S) : C.missing("门店"), '<button class="btn small" data-new="store">新建门店</button>') +
        `</div>` +
        C.section("员工", staff ? C.table([
          { title: "账号", render: (u) => `<b>${C.esc(u.username)}</b>` },
          { title: "角色", render: (u) => C.esc(C.ROLE[u.role] || u.role) },
          { title: "门店 / 区域", render: (u) => C.esc((u.stores && u.stores.map(storeName).join("、")) || u.store_name || u.store_code || u.region_name || u.region_code || "—") },
          { title: "状态", render: (u) => active(u.active) },
          { title: "", render: (u) => (u.active !== false && u.id !== C.me.id ? `<button class="btn small" data-off="${u.id}">停用</button>` : "") },
        ], P) : C.missing("员工"), '<button class="btn small primary" data-new="staff">新建员工</button>');
      holder.querySelectorAll("[data-new]").forEach((b) => (b.onclick = () => createDialog(b.dataset.new, R, S)));
      holder.querySelectorAll("[data-off]").forEach((b) => (b.onclick = async () => {
        const u = P.find((x) => String(x.id) === b.dataset.off);
        const done = await C.dialog({ title: "停用员工", danger: true, okText: "确认停用",
          body: `<div class="confirm-box">停用 <b>${C.esc(u.username)}</b> 后，该账号不能再登录后台。</div>`,
          onOk: () => C.api("PATCH", "/staff/" + u.id, { active: false }) });
        if (done) { C.toast("已停用"); C.render(); }
      }));
    },
  };

  const ACTION = {
    member_frozen: "冻结会员卡", member_lost: "挂失会员卡", member_active: "恢复会员卡", card_replace: "换卡",
    withdraw_offline: "线下提现", reverse_entry: "冲正", recharge_offline: "线下充值", recharge_batch: "批量充值",
    recharge_credit_held: "补入账", recharge_refund: "充值退款", payment_refund: "支付退款", points_adjust: "积分调整",
    points_settings: "积分设置", rule_create: "新建充值规则", rule_update: "修改充值规则", rule_archive: "归档充值规则",
    coupon_template_save: "保存优惠券", card_type_create: "新建卡类型", card_type_update: "修改卡类型",
    level_rule_create: "新建等级规则", level_rule_deactivate: "停用等级规则", earn_rule_create: "新建积分规则",
    staff_create: "新建员工",
  };

  C.pages.audit = {
    title: "审计日志",
    async render(holder, route) {
      const p = route.params;
      const form = `<form class="filters" id="audit-filter">
        <label>关键词<input name="q" value="${C.esc(p.q || "")}" maxlength="64" placeholder="对象、原因"></label>
        <label>员工<input name="staff" value="${C.esc(p.staff || "")}" maxlength="64"></label>
        <label>操作<input name="action" value="${C.esc(p.action || "")}" maxlength="40" placeholder="如 member_frozen"></label>
        <label>开始日期<input type="date" name="from" value="${C.esc(p.from || "")}"></label>
        <label>结束日期<input type="date" name="to" value="${C.esc(p.to || "")}"></label>
        <div class="actions"><button class="btn primary" type="submit">查询</button></div></form>`;
      let body, data = null;
      const rangeError = C.checkRange(p.from, p.to);
      if (rangeError) body = `<div class="notice">${rangeError}</div>`;
      else {
        try {
          data = await C.get("/audit", { q: p.q, staff: p.staff, action: p.action, from: p.from, to: p.to, page: p.page || 1, per_page: 20 });
          body = C.table([
            { title: "时间", render: (a) => C.time(a.created_at) },
            { title: "员工", render: (a) => C.esc(a.staff_username || a.staff || (a.staff_id ? "#" + a.staff_id : "系统")) },
            { title: "操作", render: (a) => C.esc(a.action_text || ACTION[a.action] || a.action) },
            { title: "对象", render: (a) => C.esc(a.subject) },
            { title: "原因", wrap: true, render: (a) => C.esc(a.reason || "—") },
          ], data.items);
        } catch (e) {
          if (e.status !== 404) throw e;
          body = C.missing("审计日志");
        }
      }
      holder.innerHTML = C.section("审计日志", form + `<div id="audit-table">${body}</div>`);
      const formEl = holder.querySelector("#audit-filter");
      formEl.onsubmit = (ev) => { ev.preventDefault(); C.go("audit", C.formParams(formEl)); };
      if (data && data.items.length) holder.querySelector("#audit-table").appendChild(C.pager(data, (page) => C.go("audit", { ...p, page })));
    },
  };
})();
